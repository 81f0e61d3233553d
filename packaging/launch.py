"""PyInstaller entry script: the same ``main`` as the ``dpsad-workbench`` gui-script."""

from __future__ import annotations

import sys

from dpsad_workbench.main import main

if __name__ == "__main__":
    sys.exit(main())
