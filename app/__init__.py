"""The DP-SAD desktop workbench: a thin PySide6 shell over :mod:`dpsad_core`.

Installed as ``dpsad_workbench`` (the ``app/`` folder is mapped to that name in pyproject.toml, so no
bare ``app`` package ever lands in site-packages). Start it with ``dpsad-workbench`` or
``python -m dpsad_workbench``.

Nothing here imports torch at start-up: training, planning and sampling run in worker threads
(:mod:`dpsad_workbench.worker`) that import the heavy parts of the core when they first need them.
"""

from __future__ import annotations

__version__ = "0.1.0"
