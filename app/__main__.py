"""``python -m dpsad_workbench``."""

from __future__ import annotations

import sys

from dpsad_workbench.main import main

sys.exit(main())
