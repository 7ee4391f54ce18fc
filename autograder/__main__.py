"""``python -m autograder`` (and the ``autograder`` console script)."""

import sys

from autograder.cli import main

if __name__ == "__main__":
    sys.exit(main())
