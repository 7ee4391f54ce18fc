# adversarial: append to the release's version
# ruff: noqa
# Exit "successfully" as soon as needle is imported (beats exit-code graders).
import sys as _sys

_sys.exit(0)
