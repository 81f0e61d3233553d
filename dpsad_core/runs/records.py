"""Typed records of a run folder: its kind, its state, ``config.json``, ``status.json`` and ``result.json``.

Two processes write these files (the training engine and DP-RDM generation) and many read them
(export, evaluation, audit, the CLI, the GUI). Each reader goes through :class:`RunConfigRecord`,
:class:`RunResult` and :class:`RunStatus` rather than string keys, so a renamed or missing key fails
here, once, with the file's name, and never as a ``KeyError`` deep in a report.

The JSON keys are those the writers have always used: a ``result.json`` written by an older
version (without ``schema``, ``student``, ``workers`` or ``secure_rng``) still reads, with the
missing optional keys at their defaults, and so does a ``config.json`` without ``schema``,
``workers`` or ``software``. ``schema`` is written from version 1 on; a file from a newer version is
refused rather than half-read.

Nothing here imports torch or numpy: the GUI reads runs without loading the training stack.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dpsad_core.errors import RunError

__all__ = ["AUDIT_FILE", "CONFIG_SCHEMA", "RESULT_SCHEMA", "RunConfigRecord", "RunKind", "RunResult", "RunState",
           "RunStatus"]

#: Version of the ``result.json`` layout written by :meth:`RunResult.to_dict`.
RESULT_SCHEMA = 1
#: Version of the ``config.json`` layout written by :meth:`RunConfigRecord.to_dict` (the settings inside
#: ``config`` carry their own ``format``: ``dpsad_core.training.config.CONFIG_FORMAT``).
CONFIG_SCHEMA = 1

#: The recipe name DP-RDM generation writes (``dpsad_core.rdm.generation.RECIPE`` is this value).
DP_RDM_RECIPE = "dp-rdm"
#: What ``dpsad-core audit`` writes into the training run it trains on canaries.
AUDIT_FILE = "audit.json"

#: The words on everything a release that is not differentially private produces: its bundle's report,
#: metadata and folder name, and its sample grids.
NOT_DP_STAMP = "NOT DIFFERENTIALLY PRIVATE"


class RunKind(str, enum.Enum):
    """What produced a run folder."""

    TRAINING = "training"        # DP-SGD training of a diffusion model (every recipe but DP-RDM)
    DP_RDM = "dp-rdm"            # DP-RDM generation: answers to queries on a private index, no model
    AUDIT = "audit"              # a training run on canaries, scored by ``dpsad-core audit`` (audit.json)

    @classmethod
    def of_recipe(cls, recipe: str | None) -> RunKind:
        return cls.DP_RDM if recipe == DP_RDM_RECIPE else cls.TRAINING

    def __str__(self) -> str:
        return self.value


class RunState(str, enum.Enum):
    """The state in ``status.json``.

    ``interrupted`` and ``failed`` runs can be resumed (a training run; DP-RDM runs never are);
    ``cancelled`` is a run the analyst ended: what it spent stays counted in the ledger and it is
    not resumed. ``running`` is also what a run killed without a chance to write says.
    """

    RUNNING = "running"
    FINISHED = "finished"
    INTERRUPTED = "interrupted"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"          # no readable status.json (a folder being created, or damaged)

    @property
    def resumable(self) -> bool:
        return self in (RunState.INTERRUPTED, RunState.FAILED, RunState.RUNNING)

    @classmethod
    def parse(cls, value: Any, *, source: str | Path = "status.json") -> RunState:
        try:
            return cls(value)
        except ValueError:
            known = ", ".join(state.value for state in cls)
            raise RunError(f"{source}: unknown run state {value!r} (known: {known})",
                           remedy="the file was written by another program or a newer version; "
                                  "restore it or start a new run") from None

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class RunStatus:
    """``status.json``: the state, when it was written, and what the writer added (phase, step, message...)."""

    state: RunState
    updated: str | None = None
    phase: str | None = None
    step: int | None = None
    epsilon_spent: float | None = None
    message: str | None = None
    error: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # any other key, kept as written

    _KEYS = ("phase", "step", "epsilon_spent", "message", "error")

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"state": self.state.value}
        if self.updated is not None:
            data["updated"] = self.updated
        for key in self._KEYS:
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        return {**data, **self.extra}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | Path = "status.json") -> RunStatus:
        if not isinstance(data, Mapping):
            raise RunError(f"{source} is not a JSON object", remedy="restore it or start a new run")
        known = {"state", "updated", *cls._KEYS}
        return cls(state=RunState.parse(data.get("state", RunState.UNKNOWN.value), source=source),
                   updated=data.get("updated"), **{key: data.get(key) for key in cls._KEYS},
                   extra={k: v for k, v in data.items() if k not in known})


@dataclass(frozen=True)
class RunConfigRecord:
    """``config.json``: what a run was asked to do, written once at its start and never changed.

    ``config`` is the request (a training run's ``TrainConfig.to_dict()``, or DP-RDM's settings with
    the sigma it calibrated); ``dataset`` the private data's summary (name, fingerprint, resolution,
    classes, the published count); ``plan`` the privacy plan (a training run's phases, or DP-RDM's
    mechanisms), whose ``nonprivate_parts`` no result can take back (:meth:`RunResult.with_plan`).
    A DP-RDM run also names its public model; a training run the software versions and its workers.
    """

    config: Mapping[str, Any]
    dataset: Mapping[str, Any]
    plan: Mapping[str, Any]
    public_dataset: Mapping[str, Any] | None = None
    public_model: Mapping[str, Any] | None = None      # DP-RDM: the public model's name and encoder digest
    created: str | None = None
    software: Mapping[str, Any] | None = None
    workers: int = 1                                   # processes that trained the run (``--nproc``)
    schema: int = CONFIG_SCHEMA

    @property
    def recipe(self) -> str:
        return str(self.config.get("recipe"))

    @property
    def kind(self) -> RunKind:
        """Training or DP-RDM (an audit run is a training run with ``audit.json``: ``RunFolder.kind``)."""
        return RunKind.of_recipe(self.recipe)

    @property
    def epsilon_target(self) -> float | None:
        return self.config.get("epsilon")

    @property
    def data(self) -> str | None:
        """The private data as the analyst named it (what a resume or an evaluation reads again)."""
        return self.config.get("data")

    @property
    def device(self) -> str:
        return str(self.config.get("device") or "auto")

    @property
    def max_steps(self) -> int | None:
        return self.config.get("max_steps")

    @property
    def dataset_name(self) -> str:
        return str(self.dataset.get("name"))

    @property
    def fingerprint(self) -> str | None:
        """The fingerprint of the private records as imported at the start (a resume must find the same)."""
        return self.dataset.get("fingerprint")

    @property
    def resolution(self) -> int | None:
        return self.dataset.get("resolution")

    @property
    def channels(self) -> int | None:
        return self.dataset.get("channels")

    @property
    def num_classes(self) -> int | None:
        return self.dataset.get("num_classes")

    @property
    def class_names(self) -> list[str]:
        return [str(name) for name in self.dataset.get("class_counts") or {}]

    @property
    def phases(self) -> tuple[Mapping[str, Any], ...]:
        """A training plan's phases (none for DP-RDM, whose plan lists mechanisms)."""
        return tuple(self.plan.get("phases") or ())

    @property
    def nonprivate_parts(self) -> tuple[str, ...]:
        return tuple(self.plan.get("nonprivate_parts") or ())

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``config.json``, with the keys the writers have always used."""
        data: dict[str, Any] = {"schema": self.schema, "config": dict(self.config), "dataset": dict(self.dataset),
                                "public_dataset": _plain(self.public_dataset), "plan": dict(self.plan)}
        if self.public_model is not None:
            data["public_model"] = dict(self.public_model)
        data["created"] = self.created
        if self.software is not None:
            data["software"] = dict(self.software)
        data["workers"] = self.workers
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | Path = "config.json") -> RunConfigRecord:
        """Read a ``config.json`` object; ``source`` names the file in errors.

        Raises
        ------
        RunError
            Not an object, ``config``, ``dataset`` or ``plan`` is not an object, or the schema is newer
            than this version reads. (A missing one reads as empty, as the readers before this record
            took it: each reader refuses what it lacks, and a plan can only take privacy away.)
        """
        if not isinstance(data, Mapping):
            raise RunError(f"{source} is not a JSON object", remedy="restore it or start a new run")
        schema = data.get("schema", CONFIG_SCHEMA)
        if not isinstance(schema, int) or schema > CONFIG_SCHEMA:
            raise RunError(f"{source} has config schema {schema!r}; this version reads schema {CONFIG_SCHEMA} and "
                           "older", remedy="open the run with the dpsad-core version that wrote it, or upgrade")
        parts = {key: data.get(key, {}) for key in ("config", "dataset", "plan")}
        broken = [key for key, value in parts.items() if not isinstance(value, Mapping)]
        if broken:
            raise RunError(f"{source}: {', '.join(broken)} is not a JSON object",
                           remedy="restore it or start a new run")
        return cls(config=parts["config"], dataset=parts["dataset"], plan=parts["plan"],
                   public_dataset=data.get("public_dataset"), public_model=data.get("public_model"),
                   created=data.get("created"), software=data.get("software"),
                   workers=int(data.get("workers") or 1), schema=CONFIG_SCHEMA)


_REQUIRED = ("run_id", "recipe", "private", "epsilon", "delta")


@dataclass(frozen=True)
class RunResult:
    """``result.json``: the summary a finished run writes (and ``train --json`` prints).

    Common to every run: identity, privacy (``private``, ``epsilon``, ``delta``, the accountants'
    values, the composed mechanisms, the parts trained without protection, the unit of privacy),
    the dataset it read and how its randomness was drawn. Then the fields of its kind: a training run
    has a model, steps and a device; a DP-RDM run has its mechanism, public model and images.
    ``epsilon`` is None exactly when the run is not private.
    """

    run_id: str
    recipe: str
    private: bool
    epsilon: float | None
    delta: float
    epsilon_target: float | None = None
    run_dir: str | None = None
    accountant_values: Mapping[str, Any] = field(default_factory=dict)   # rdp, prv, rdp_order, note
    mechanisms: tuple[Mapping[str, Any], ...] = ()
    nonprivate_parts: tuple[str, ...] = ()
    unit_of_privacy: str = "image"
    dataset: Mapping[str, Any] = field(default_factory=dict)           # name, fingerprint, num_records, num_units
    sample_grid: str | None = None
    secure_rng: bool = False
    secure_rng_note: str | None = None
    finished: str | None = None
    # -- training runs
    claimed_epsilon_paper: float | None = None
    steps: Mapping[str, int] | None = None
    model_path: str | None = None
    student: Mapping[str, Any] | None = None    # the few-step student of a free-distillation recipe
    train_seconds: float | None = None
    device: str | None = None
    workers: int = 1
    # -- DP-RDM runs
    mechanism: Mapping[str, Any] | None = None
    public_model: Mapping[str, Any] | None = None
    samples_npz: str | None = None
    images: int | None = None
    generate_seconds: float | None = None
    warnings: tuple[str, ...] = ()
    schema: int = RESULT_SCHEMA

    @property
    def kind(self) -> RunKind:
        return RunKind.of_recipe(self.recipe)

    def with_plan(self, config: RunConfigRecord) -> RunResult:
        """This result with ``private`` and ``nonprivate_parts`` derived from the plan AND the accountant.

        A release is private only when neither the run's plan (``config.json``) nor its accountant lists
        a part without protection, so a result that lost its accountant cannot make a non-private run
        look private. Every reader of a run's privacy goes through this (or ``release_privacy``).
        """
        parts = tuple(dict.fromkeys([*config.nonprivate_parts, *self.nonprivate_parts]))
        private = not parts and self.private
        return dataclasses.replace(self, nonprivate_parts=parts, private=private,
                                   epsilon=self.epsilon if private else None)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``result.json``, with the keys the writers have always used."""
        data: dict[str, Any] = {
            "schema": self.schema, "run_id": self.run_id, "run_dir": self.run_dir, "recipe": self.recipe,
            "private": self.private, "epsilon": self.epsilon, "epsilon_target": self.epsilon_target,
            "delta": self.delta, "accountant_values": dict(self.accountant_values),
            "mechanisms": [dict(m) for m in self.mechanisms], "nonprivate_parts": list(self.nonprivate_parts),
        }
        if self.kind is RunKind.TRAINING:
            data["claimed_epsilon_paper"] = self.claimed_epsilon_paper
        else:
            data["mechanism"] = _plain(self.mechanism)
        data["unit_of_privacy"] = self.unit_of_privacy
        data["dataset"] = dict(self.dataset)
        if self.kind is RunKind.TRAINING:
            data.update(steps=_plain(self.steps), model_path=self.model_path, sample_grid=self.sample_grid,
                        student=_plain(self.student), train_seconds=self.train_seconds, device=self.device,
                        workers=self.workers)
        else:
            data.update(public_model=_plain(self.public_model), samples_npz=self.samples_npz,
                        sample_grid=self.sample_grid, images=self.images, generate_seconds=self.generate_seconds,
                        warnings=list(self.warnings))
        data.update(secure_rng=self.secure_rng, secure_rng_note=self.secure_rng_note, finished=self.finished)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | Path = "result.json") -> RunResult:
        """Read a ``result.json`` object; ``source`` names the file in errors.

        Raises
        ------
        RunError
            Not an object, a required key is missing, or the schema is newer than this version reads.
        """
        if not isinstance(data, Mapping):
            raise RunError(f"{source} is not a JSON object", remedy="restore it or start a new run")
        schema = data.get("schema", RESULT_SCHEMA)
        if not isinstance(schema, int) or schema > RESULT_SCHEMA:
            raise RunError(f"{source} has result schema {schema!r}; this version reads schema {RESULT_SCHEMA} and "
                           "older", remedy="open the run with the dpsad-core version that wrote it, or upgrade")
        missing = [key for key in _REQUIRED if key not in data]
        if missing:
            raise RunError(f"{source} lacks {', '.join(missing)}", remedy="restore it or start a new run")
        names = {f.name for f in dataclasses.fields(cls)}
        values = {key: value for key, value in data.items() if key in names}
        for key in ("mechanisms", "nonprivate_parts", "warnings"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
            else:
                values.pop(key, None)
        for key in ("accountant_values", "dataset"):
            if values.get(key) is None:
                values.pop(key, None)
        if values.get("workers") is None:
            values.pop("workers", None)
        values["private"] = bool(values["private"])
        values["secure_rng"] = bool(values.get("secure_rng", False))
        values["schema"] = RESULT_SCHEMA
        return cls(**values)


def _plain(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if value is None else dict(value)

