# Each src/NAME.cpp becomes the Python extension module NAME (pybind11).
EXT_SUFFIX := $(shell $(PYTHON) -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
EXTENSIONS := $(patsubst %.cpp,%$(EXT_SUFFIX),$(wildcard src/*.cpp))
DARWIN_FLAGS := $(if $(filter Darwin,$(shell uname -s)),-undefined dynamic_lookup,)

build: $(EXTENSIONS)

src/%$(EXT_SUFFIX): src/%.cpp
	c++ -O3 -Wall -shared -std=c++17 -fPIC $$($(PYTHON) -m pybind11 --includes) $< -o $@ $(DARWIN_FLAGS)
