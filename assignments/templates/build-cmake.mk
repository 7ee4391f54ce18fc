# CMake (CMakeLists.txt) compiles src/ into needle/backend_ndarray/ when a source is newer than
# the modules; configure output is kept quiet, only the compiler's messages are shown.
build:
	@$(PYTHON) check_helpers.py build
