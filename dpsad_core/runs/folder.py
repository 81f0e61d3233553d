"""Run folders in the workspace: one folder per run, safe under kills.

Layout of ``<workspace>/runs/<run_id>/``::

    config.json      resolved TrainConfig, dataset summary, privacy plan (written once)
    checkpoint.pt    every model, optimiser, EMA, the accountant history and RNG states (atomic)
    metrics.jsonl    one JSON line per step (local only: derived from private data, never exported)
    privacy.json     the accountant's history and values, rewritten every step
    status.json      state (a RunState: running / interrupted / finished / failed / cancelled), phase, step
    result.json      the final summary (a RunResult; what ``train --json`` prints)
    model.pt         the released model (for dpsad also the DP teacher its student came from; no discriminator)
    samples/         sample grids as training goes
    .lock            held by the process that is training this run
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import io
import json
import os
import secrets
from pathlib import Path
from typing import Any, Protocol

from dpsad_core.atomic import atomic_write, atomic_write_json
from dpsad_core.errors import RunError
from dpsad_core.runs.records import AUDIT_FILE, RunConfigRecord, RunKind, RunResult, RunState, RunStatus

RUNS_DIR = "runs"


def new_run_id(recipe: str) -> str:
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{recipe}-{secrets.token_hex(2)}"


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class RunFolder:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock_handle: io.TextIOWrapper | None = None

    @property
    def run_id(self) -> str:
        return self.path.name

    @classmethod
    def create(cls, workspace: Path, run_id: str) -> RunFolder:
        path = Path(workspace) / RUNS_DIR / run_id
        path.mkdir(parents=True, exist_ok=False)
        (path / "samples").mkdir()
        return cls(path)

    @classmethod
    def open(cls, workspace: Path, run: str) -> RunFolder:
        """Open by run id (in the workspace) or by a path to the run folder."""
        candidates = [Path(run), Path(workspace) / RUNS_DIR / run]
        for candidate in candidates:
            if (candidate / "config.json").is_file():
                return cls(candidate.resolve())
        raise RunError(f"no run {run!r} in {Path(workspace) / RUNS_DIR}",
                       remedy="list runs with: dpsad-core runs")

    # -- files -------------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoint.pt"

    @property
    def model_path(self) -> Path:
        return self.path / "model.pt"

    def read_json(self, name: str) -> dict[str, Any]:
        path = self.path / name
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise RunError(f"{path} is missing", remedy="the run folder is incomplete; start a new run") from None
        except json.JSONDecodeError as error:
            raise RunError(f"{path} is not valid JSON ({error})", remedy="restore it or start a new run") from None

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        atomic_write_json(self.path / name, data)

    def save_torch(self, path: Path, state: dict[str, Any]) -> None:
        import torch

        atomic_write(path, lambda handle: torch.save(state, handle))

    def load_checkpoint(self) -> dict[str, Any] | None:
        import torch

        if not self.checkpoint_path.exists():
            return None
        try:
            return torch.load(self.checkpoint_path, map_location="cpu", weights_only=False)
        except Exception as error:  # noqa: BLE001 - any unreadable checkpoint is the same problem to the user
            raise RunError(f"{self.checkpoint_path} cannot be read ({error})",
                           remedy="the checkpoint is damaged; start a new run") from None

    def set_status(self, state: RunState | str, **extra: Any) -> None:
        state = RunState.parse(state, source=self.path / "status.json")  # never write a state readers refuse
        self.write_json("status.json", {"state": state.value, "updated": utc_now(), **extra})

    def status(self) -> dict[str, Any]:
        """``status.json`` as written (``{"state": "unknown"}`` when missing or unreadable)."""
        try:
            return self.read_json("status.json")
        except RunError:
            return {"state": RunState.UNKNOWN.value}

    def status_record(self) -> RunStatus:
        """``status.json`` as a :class:`RunStatus`; an unknown state is refused naming the file."""
        return RunStatus.from_dict(self.status(), source=self.path / "status.json")

    @property
    def state(self) -> RunState:
        return self.status_record().state

    @property
    def kind(self) -> RunKind:
        """What made the run: an audit (canaries, ``audit.json``), DP-RDM generation, or training."""
        if (self.path / AUDIT_FILE).is_file():
            return RunKind.AUDIT
        return self.config().kind

    def config(self) -> RunConfigRecord:
        """``config.json`` as a :class:`RunConfigRecord` (a RunError naming the file when missing or unreadable)."""
        return RunConfigRecord.from_dict(self.read_json("config.json"), source=self.path / "config.json")

    @property
    def has_result(self) -> bool:
        return (self.path / "result.json").is_file()

    def result(self) -> RunResult:
        """``result.json`` as a :class:`RunResult` (a RunError naming the file when missing or unreadable)."""
        return RunResult.from_dict(self.read_json("result.json"), source=self.path / "result.json")

    def write_result(self, result: RunResult) -> None:
        self.write_json("result.json", result.to_dict())

    # -- metrics -----------------------------------------------------------------------------------
    def append_metrics(self, record: dict[str, Any]) -> None:
        with open(self.path / "metrics.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, allow_nan=True) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        path = self.path / "metrics.jsonl"
        if not path.exists():
            return []
        records = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
        return records

    def truncate_metrics(self, phase_index: int, step: int) -> None:
        """Drop metric lines past the checkpoint (they are recomputed identically after a resume)."""
        kept = [r for r in self.read_metrics() if (r["phase_index"], r["step"]) <= (phase_index, step)]
        text = "".join(json.dumps(r, allow_nan=True) + "\n" for r in kept)
        atomic_write(self.path / "metrics.jsonl", lambda handle: handle.write(text.encode("utf-8")))

    # -- lock --------------------------------------------------------------------------------------
    def lock(self) -> None:
        """Hold ``.lock`` for this process (RunError naming the run when another process holds it)."""
        handle = open(self.path / ".lock", "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise RunError(f"run {self.run_id} is being trained by another process",
                           remedy="wait for it to finish or stop it first") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock_handle = handle

    def unlock(self) -> None:
        if self._lock_handle is not None:
            fcntl.flock(self._lock_handle, fcntl.LOCK_UN)
            self._lock_handle.close()
            self._lock_handle = None


def release_privacy(config: RunConfigRecord, result: dict[str, Any] | None = None) -> dict[str, Any]:
    """``result`` (or ``{}``) with ``private``/``nonprivate_parts`` derived from the plan AND the accountant.

    A release is private only when neither the run's plan (``config.json``) nor its accountant lists a
    part without protection, so a result that lost its accountant (a resume without a checkpoint, an
    older version) cannot make a non-private run look private. Every reader of a run's privacy goes
    through this or :meth:`RunResult.with_plan` (the same rule on a typed result): export, ``sample``,
    ``runs`` and the GUI.
    """
    result = dict(result or {})
    parts = [*config.nonprivate_parts, *(result.get("nonprivate_parts") or [])]
    parts = list(dict.fromkeys(parts))
    result["nonprivate_parts"] = parts
    result["private"] = not parts and bool(result.get("private", True))
    if not result["private"]:
        result["epsilon"] = None
    return result


def list_runs(workspace: Path) -> list[dict[str, Any]]:
    """A summary per run, newest first."""
    root = Path(workspace) / RUNS_DIR
    if not root.is_dir():
        return []
    summaries = []
    for path in sorted(root.iterdir(), reverse=True):
        if not (path / "config.json").is_file():
            continue
        run = RunFolder(path)
        config = run.config()
        status = run.status_record()
        result = run.result().with_plan(config) if run.has_result else None
        summaries.append({
            "run_id": run.run_id,
            "path": str(path),
            "state": status.state.value,
            "kind": run.kind.value,
            "recipe": config.recipe,
            "dataset": config.dataset_name,
            "epsilon_target": config.epsilon_target,
            "epsilon": result.epsilon if result is not None else status.epsilon_spent,
            "private": result.private if result is not None else release_privacy(config)["private"],
            "created": config.created,
        })
    return summaries


class RunFiles(Protocol):
    """What a run uses of its folder: a :class:`RunFolder`, or a stand-in that writes nothing (a worker of
    rank > 0: ``training.engine._FollowerRun``)."""

    @property
    def run_id(self) -> str: ...
    @property
    def path(self) -> Path: ...
    @property
    def checkpoint_path(self) -> Path: ...
    @property
    def model_path(self) -> Path: ...
    def lock(self) -> None: ...
    def unlock(self) -> None: ...
    def load_checkpoint(self) -> dict[str, Any] | None: ...
    def read_json(self, name: str) -> dict[str, Any]: ...
    def config(self) -> RunConfigRecord: ...
    def write_json(self, name: str, data: dict[str, Any]) -> None: ...
    def save_torch(self, path: Path, state: dict[str, Any]) -> None: ...
    def set_status(self, state: RunState | str, **extra: Any) -> None: ...
    def write_result(self, result: RunResult) -> None: ...
    def append_metrics(self, record: dict[str, Any]) -> None: ...
    def truncate_metrics(self, phase_index: int, step: int) -> None: ...
