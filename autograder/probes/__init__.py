"""Hidden probe modules, one per homework (hwN.py); they import only ``autograder.engine.kit``."""
