"""``dpsad-core ledger``: what every dataset has spent across all runs, and its budget cap.

``dpsad-core ledger`` lists every dataset in the workspace's ledger with its composed total;
``dpsad-core ledger DATASET`` shows one line per run, then the total; ``--cap EPSILON`` and
``--remove-cap`` set the dataset's cap. DATASET is a fingerprint (or a unique prefix of one), ``demo``,
a saved dataset's name, a path, or a dataset name as the ledger shows it.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from dpsad_core.commands.common import add_workspace_option, print_json, workspace_from_args
from dpsad_core.errors import ConfigError, DataImportError

_MIN_PREFIX = 8  # characters of the hex digest: fewer would match by accident


def register(commands: argparse._SubParsersAction) -> None:
    """Add this module's sub-commands to the ``dpsad-core`` parser."""
    sub = commands.add_parser(
        "ledger", help="privacy spent per dataset across all runs, and budget caps",
        description="Every run's privacy spend is recorded against the fingerprint of the data it read. The total "
                    "per dataset composes all runs (RDP and PRV, like one run), at the smallest delta of its "
                    "runs. A cap refuses any run that would take the total over it.")
    sub.add_argument("dataset", nargs="?", metavar="DATASET",
                     help="fingerprint (or a prefix), 'demo', a saved dataset's name, a path, or a name the ledger "
                          "lists; without it, every dataset")
    cap = sub.add_mutually_exclusive_group()
    cap.add_argument("--cap", type=float, metavar="EPSILON", help="set the dataset's budget cap")
    cap.add_argument("--remove-cap", action="store_true", help="remove the dataset's budget cap")
    # --release: its name before "release" meant only what leaves the machine (still accepted)
    sub.add_argument("--drop-reservation", "--release", dest="drop_reservation", metavar="RUN",
                     help="drop the planned spend still held by a run that was killed and will not be resumed "
                          "(what it spent stays counted)")
    add_workspace_option(sub)
    sub.add_argument("--json", action="store_true", help="print one JSON object")
    sub.set_defaults(handler=_cmd_ledger)


def _cmd_ledger(args: argparse.Namespace) -> int:
    from dpsad_core.privacy.ledger import PrivacyLedger

    workspace = workspace_from_args(args)
    ledger = PrivacyLedger(workspace)
    if args.drop_reservation:
        return _drop_reservation(ledger, workspace, args.drop_reservation)
    if args.dataset is None:
        if args.cap is not None or args.remove_cap:
            raise ConfigError("--cap and --remove-cap need a DATASET", field="dataset",
                              remedy="e.g. dpsad-core ledger demo --cap 8")
        rows = ledger.datasets()
        summaries = [ledger.summary(row["fingerprint"]) for row in rows]
        overlaps = {row["fingerprint"]: ledger.overlaps(row["fingerprint"]) for row in rows}
        if args.json:
            print_json({"ledger": str(ledger.path), "datasets": [
                s.to_dict() | {"overlaps": overlaps[s.dataset_fingerprint]} for s in summaries]})
        else:
            _print_datasets(summaries, ledger.path, overlaps)
        return 0
    fingerprint, name = _resolve_dataset(args.dataset, ledger, workspace)
    if args.cap is not None or args.remove_cap:
        ledger.set_cap(fingerprint, None if args.remove_cap else args.cap, dataset_name=name)
    summary = ledger.summary(fingerprint)
    runs = [_run_row(entry, workspace) for entry in summary.entries]
    shared = ledger.overlaps(fingerprint)
    if args.json:
        print_json(summary.to_dict() | {"runs": runs, "ledger": str(ledger.path), "overlaps": shared})
        return 0
    _print_dataset(summary, runs, shared)
    return 0


def _drop_reservation(ledger, workspace: Path, run_id: str) -> int:
    """A run's reservation counts against the cap until it ends; a run killed with -9 never ends."""
    from dpsad_core.errors import RunError
    from dpsad_core.runs.folder import RUNS_DIR, RunFolder

    if not any(entry.run_id == run_id for row in ledger.datasets() for entry in ledger.entries(row["fingerprint"])):
        raise RunError(f"run {run_id!r} is not in the ledger", remedy="dpsad-core ledger DATASET lists its runs")
    folder = Path(workspace) / RUNS_DIR / run_id
    if folder.is_dir():
        run = RunFolder(folder)
        run.lock()  # RunError while the run is being trained: its reservation is still needed
        run.unlock()
    ledger.drop_reservation(run_id)
    print(f"dropped the planned spend held by run {run_id}; what it spent stays counted "
          f"(resuming it reserves its plan again)")
    return 0


# -- finding the dataset ---------------------------------------------------------------------------
def _resolve_dataset(spec: str, ledger, workspace: Path) -> tuple[str, str | None]:
    """``(fingerprint, name)`` for what the user typed; see the module docstring for the order."""
    known = ledger.datasets()
    text = spec.strip()
    digest = text.removeprefix("hmac-sha256:")
    by_fingerprint = [row for row in known if row["fingerprint"] == text or (
        len(digest) >= _MIN_PREFIX and row["fingerprint"].removeprefix("hmac-sha256:").startswith(digest))]
    if len(by_fingerprint) == 1:
        return by_fingerprint[0]["fingerprint"], by_fingerprint[0]["name"]
    if len(by_fingerprint) > 1:
        raise ConfigError(f"{text!r} is the start of {len(by_fingerprint)} fingerprints in the ledger",
                          field="dataset", value=text, remedy="give more characters of the fingerprint")
    from dpsad_core.data import resolve_data_source

    try:
        dataset = resolve_data_source(text, workspace=workspace, min_records=0)
    except DataImportError as error:
        by_name = [row for row in known if row["name"] == text]
        if len(by_name) == 1:
            return by_name[0]["fingerprint"], by_name[0]["name"]
        listed = ", ".join(f"{row['name']} ({row['fingerprint'][:20]}...)" for row in known) or "none yet"
        if len(by_name) > 1:
            raise ConfigError(f"{len(by_name)} datasets in the ledger are named {text!r}", field="dataset",
                              value=text,
                              remedy="give the fingerprint instead (dpsad-core ledger lists them)") from None
        raise DataImportError(f"{text!r} is not a fingerprint or a dataset name in the ledger (known: {listed}), "
                              f"nor data that can be read ({error.message})",
                              remedy="pass a fingerprint from 'dpsad-core ledger', 'demo', a saved dataset's name, "
                                     "or the data's path") from None
    from dpsad_core.privacy.ledger_datasets import ledger_identity

    return ledger_identity(workspace, dataset), dataset.name


# -- printing --------------------------------------------------------------------------------------
def _epsilon(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isinf(value)):
        return "inf (NOT PRIVATE)"
    if isinstance(value, float) and math.isnan(value):
        return "-"
    return f"{value:.4g}"


def _run_row(entry, workspace: Path) -> dict[str, Any]:
    from dpsad_core.runs.folder import RUNS_DIR, RunFolder

    folder = Path(workspace) / RUNS_DIR / entry.run_id
    state = RunFolder(folder).state.value if (folder / "config.json").is_file() else None
    values, note = entry.values()
    return entry.to_dict() | {"state": state, "epsilon": values.to_dict(), "note": note}


def _describe_overlap(overlap: dict[str, Any]) -> str:
    how = (f"{overlap['identical']} identical record(s)" if overlap["identical"]
           else f"{overlap['resized']:.0%} of sampled records at another size")
    return f"{overlap['name'] or '?'} ({overlap['fingerprint'][:20]}..., {how})"


def _print_datasets(summaries, path: Path, overlaps: dict[str, list[dict[str, Any]]]) -> None:
    if not summaries:
        print(f"nothing recorded yet in {path}")
        return
    print(f"{'DATASET':<24} {'FINGERPRINT':<24} {'RUNS':>4} {'EPSILON':>17} {'RDP':>8} {'PRV':>8} {'DELTA':>8} "
          f"{'CAP':>6} {'LEFT':>6}")
    for s in summaries:
        cap = "-" if s.cap_epsilon is None else f"{s.cap_epsilon:g}"
        left = "-" if s.remaining is None else f"{s.remaining:.3g}"
        print(f"{(s.dataset_name or '?')[:24]:<24} {s.dataset_fingerprint[:21] + '...':<24} {len(s.entries):>4} "
              f"{_epsilon(s.spent.certified):>17} {_epsilon(s.spent.rdp):>8} {_epsilon(s.spent.prv):>8} "
              f"{s.spent.delta:>8.2g} {cap:>6} {left:>6}")
        for note in s.notes:
            print(f"  note: {note}")
        for overlap in overlaps.get(s.dataset_fingerprint, ()):
            print(f"  shares records with {_describe_overlap(overlap)}: their runs count here too")


def _print_dataset(summary, runs: list[dict[str, Any]], overlaps: list[dict[str, Any]]) -> None:
    print(f"dataset {summary.dataset_name or '?'}  {summary.dataset_fingerprint}")
    for overlap in overlaps:
        print(f"  shares records with {_describe_overlap(overlap)}: runs on either count against both")
    if runs:
        print(f"  {'RUN':<32} {'KIND':<6} {'RECIPE':<22} {'STATE':<12} {'EPSILON':>17} {'DELTA':>8}")
    for run in runs:
        state = run["state"] or "no folder"
        if run["active"]:
            state += "*"
        via = "" if run["dataset_fingerprint"] == summary.dataset_fingerprint else "  (on an overlapping dataset)"
        print(f"  {run['run_id']:<32} {run['kind']:<6} {(run['recipe'] or '-'):<22} {state:<12} "
              f"{_epsilon(run['epsilon']['certified']):>17} {run['delta']:>8.2g}{via}")
    if any(run["active"] for run in runs):
        print("  * active: its planned spend is reserved against the cap until it ends")
    spent = summary.spent
    print(f"total over {len(runs)} run(s), composed: epsilon {_epsilon(spent.certified)} at delta {spent.delta:g} "
          f"(RDP {_epsilon(spent.rdp)}, PRV {_epsilon(spent.prv)})")
    if not spent.private:
        print("  a run on this dataset was NOT differentially private: nothing released from it has a guarantee")
    if summary.committed.certified != spent.certified:
        print(f"  with active runs' reservations: {_epsilon(summary.committed.certified)}")
    if summary.cap_epsilon is None:
        print("cap: none (set one with --cap EPSILON)")
    else:
        print(f"cap: {summary.cap_epsilon:g}, left: {summary.remaining:.4g}"
              + ("  (OVER THE CAP: every new run on this dataset is refused)" if summary.over_cap else ""))
    for note in summary.notes:
        print(f"note: {note}")
