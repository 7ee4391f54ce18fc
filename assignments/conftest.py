"""pytest setup for the homeworks inside the course repository.

Here the public tests of ``assignments/hwN/tests`` run against the reference sources: needle
(installed from ``library/``), ``library/apps`` (as ``apps``) and hw0's ``assignments/hw0/src``.
In a student release, the generated ``conftest.py`` at the release root plays this role.
"""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Appended, not prepended: nothing here may shadow an installed package.
for folder in (REPO / "library", REPO / "assignments" / "hw0" / "src"):
    if str(folder) not in sys.path:
        sys.path.append(str(folder))
