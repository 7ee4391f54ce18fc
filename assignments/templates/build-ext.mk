# Each src/NAME.cpp becomes the Python extension module NAME (pybind11), compiled when the
# module is missing or older than its source; only the compiler's messages are shown.
build:
	@$(PYTHON) check_helpers.py build
