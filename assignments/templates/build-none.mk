build:
	@echo "$(NAME) has no C++ to build"
