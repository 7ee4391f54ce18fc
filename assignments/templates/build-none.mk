build:
	@true
