"""The workbench's own settings, kept as JSON beside the core's keys (``dpsad_core.paths.config_dir``).

Qt's QSettings would write to the user's home even in tests; this file follows ``$DPSAD_CONFIG_DIR``
like everything else the core keeps, so a test or a second installation never touches the user's.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dpsad_core.errors import ConfigError

SETTINGS_FILE = "workbench.json"
DEVICES = ("auto", "cpu", "cuda")
#: The Settings screen's choices: (key, label, device, all_gpus).
DEVICE_CHOICES = (
    ("auto", "Automatic: one GPU when there is one, else the CPU", "auto", False),
    ("cpu", "CPU", "cpu", False),
    ("gpu", "One GPU", "cuda", False),
    ("all-gpus", "All GPUs (one worker each)", "cuda", True),
)


@dataclass(frozen=True)
class AppSettings:
    """What the Settings screen changes.

    Parameters
    ----------
    workspace
        Folder for runs and datasets; None means the core's default (``$DPSAD_WORKSPACE`` or the
        user data folder).
    device
        ``auto``, ``cpu`` or ``cuda``: passed to every run started from the app.
    all_gpus
        With ``cuda``: train on every GPU of the machine, one worker each (``--nproc`` = the number
        of GPUs; the same mechanism and epsilon as one worker). Sampling uses one GPU.
    torch_threads
        Threads torch may use for training. One leaves the other core to the window on a 2-core
        machine; raise it on a bigger one.
    """

    workspace: str | None = None
    device: str = "auto"
    torch_threads: int = 1
    all_gpus: bool = False

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ConfigError(f"unknown device {self.device!r}", field="device", value=self.device,
                              remedy=f"choose one of: {', '.join(DEVICES)}")
        if self.all_gpus is not False and (self.all_gpus is not True or self.device != "cuda"):
            raise ConfigError("all_gpus needs the device cuda", field="all_gpus", value=self.all_gpus,
                              remedy="choose 'All GPUs' on the Settings screen, or set device to cuda")
        if not isinstance(self.torch_threads, int) or self.torch_threads < 1:
            raise ConfigError("torch_threads must be a whole number >= 1", field="torch_threads",
                              value=self.torch_threads, remedy="use 1 on a small machine")

    def workspace_path(self) -> Path:
        """The workspace folder, created if missing."""
        from dpsad_core.paths import workspace_dir

        path = workspace_dir(self.workspace)
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def device_choice(self) -> str:
        """The key of :data:`DEVICE_CHOICES` these settings make."""
        return next(key for key, _, device, every in DEVICE_CHOICES
                    if device == self.device and every == self.all_gpus)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def settings_path() -> Path:
    from dpsad_core.paths import config_dir

    return config_dir() / SETTINGS_FILE


def load_settings() -> AppSettings:
    """The saved settings, or the defaults when none are saved.

    Raises
    ------
    ConfigError
        The file exists but cannot be read; the message names it.
    """
    path = settings_path()
    if not path.exists():
        return AppSettings()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        known = {f.name for f in dataclasses.fields(AppSettings)}
        return AppSettings(**{k: v for k, v in data.items() if k in known})
    except (OSError, ValueError, TypeError) as error:
        raise ConfigError(f"{path}: the workbench settings cannot be read ({error})", field="settings",
                          value=str(path), remedy="delete the file to go back to the defaults") from None


def save_settings(settings: AppSettings) -> Path:
    from dpsad_core.atomic import atomic_write_json

    path = settings_path()
    atomic_write_json(path, settings.to_dict())
    return path
