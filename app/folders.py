"""Where the workbench's file dialogs open, instead of wherever the app was started from.

What the workbench writes or hands out (bundles, keys) is looked for in the workspace's exports folder;
the analyst's own data (an import, real test images) in the folder chosen for data last in this session,
and in the workspace before that.
"""

from __future__ import annotations

from pathlib import Path

_last_data_folder: Path | None = None  # this session's: never saved (it is a path to private data)


def exports_folder(workspace: Path) -> Path:
    """The workspace's exports folder (bundles go there by default), or the workspace until it exists."""
    return workspace / "exports" if (workspace / "exports").is_dir() else workspace


def data_folder(workspace: Path) -> Path:
    """Where a dialog choosing the analyst's data opens."""
    if _last_data_folder is not None and _last_data_folder.is_dir():
        return _last_data_folder
    return workspace


def remember_data(path: str | Path) -> None:
    """Note the data just chosen: the next data dialog opens beside it (in the folder that holds it)."""
    global _last_data_folder
    _last_data_folder = Path(path).parent


def workspace_of(widget) -> Path:
    """The workspace in use for ``widget``: its window's settings, else the saved settings."""
    from dpsad_workbench.settings import AppSettings, load_settings

    while widget is not None:
        settings = getattr(widget, "settings", None)
        if isinstance(settings, AppSettings):
            return settings.workspace_path()
        widget = widget.parentWidget()
    return load_settings().workspace_path()
