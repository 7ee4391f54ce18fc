build:
	cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DPython_EXECUTABLE="$$(command -v $(PYTHON))" \
	  -Dpybind11_DIR="$$($(PYTHON) -m pybind11 --cmakedir)"
	cmake --build build -j
