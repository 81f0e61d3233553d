"""Where the workbench keeps its files.

Workspace (runs, imported datasets): ``$DPSAD_WORKSPACE`` or platformdirs' user data dir.
Config (signing and fingerprint keys): ``$DPSAD_CONFIG_DIR`` or platformdirs' user config dir.
Cache (generated public data, nothing private): ``$DPSAD_CACHE_DIR`` or platformdirs' user cache dir.
"""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "dpsad-workbench"


def workspace_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The workspace folder: ``override``, else ``$DPSAD_WORKSPACE``, else the user data dir."""
    if override is not None:
        path = Path(override)
    elif os.environ.get("DPSAD_WORKSPACE"):
        path = Path(os.environ["DPSAD_WORKSPACE"])
    else:
        import platformdirs

        path = Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    return path.expanduser().resolve()


def config_dir() -> Path:
    """The folder for installation-local keys: ``$DPSAD_CONFIG_DIR`` or the user config dir."""
    if os.environ.get("DPSAD_CONFIG_DIR"):
        path = Path(os.environ["DPSAD_CONFIG_DIR"])
    else:
        import platformdirs

        path = Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))
    path = path.expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def cache_dir() -> Path:
    """The folder for files that can be made again (generated public data): ``$DPSAD_CACHE_DIR`` or the
    user cache dir. Shared by every workspace; deleting it only costs time."""
    if os.environ.get("DPSAD_CACHE_DIR"):
        path = Path(os.environ["DPSAD_CACHE_DIR"])
    else:
        import platformdirs

        path = Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))
    return path.expanduser().resolve()
