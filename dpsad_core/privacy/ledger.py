"""The privacy ledger: every run's spend recorded against the dataset it read, with a budget cap.

One SQLite file per workspace (``<workspace>/ledger.sqlite``, WAL mode, every write one
transaction, ``synchronous=FULL``), so two processes can write at once and a kill at any point
leaves the last committed state. Three tables:

- ``datasets``: ``fingerprint`` (primary key), ``name``, ``cap_epsilon`` (NULL: no cap);
- ``spends``: one row per run (``run_id`` primary key): the dataset's fingerprint, ``kind``
  (``"train"``, ``"rdm"``, ...), recipe, delta, whether it is private, ``mechanisms`` (the run's
  whole spend so far as a JSON list of :meth:`Mechanism.to_dict`), ``reserved`` (the mechanisms the
  run is allowed to reach while it is active, NULL once it ended), created and updated times;
- ``overlaps``: pairs of datasets that share records (:mod:`dpsad_core.data.identity`: the same records
  in another order, a subset, a superset, or a re-import at another size), stored both ways with how many
  records they share. A dataset's total composes the runs on it *and* on every dataset it overlaps, and a
  run must fit under the cap of each of them: a copy never opens a fresh budget.

A run's row is *replaced* each time it is recorded (idempotent: a resumed run is the same run).

How totals compose (and at which delta): :mod:`dpsad_core.privacy.ledger_entries`.
"""

from __future__ import annotations

import errno
import json
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dpsad_core.errors import ConfigError, DpsadError, PrivacyBudgetError, RunError, StorageError, storage_error
from dpsad_core.privacy.analysis import ACCOUNTANTS
from dpsad_core.privacy.ledger_entries import BudgetCheck, LedgerEntry, LedgerSummary, compose_entries
from dpsad_core.privacy.mechanisms import Mechanism, _check_delta, _check_part

__all__ = ["LEDGER_FILE", "BudgetCheck", "LedgerEntry", "LedgerSummary", "PrivacyLedger", "compose_entries"]

LEDGER_FILE = "ledger.sqlite"
SCHEMA_VERSION = 2  # 2: the overlaps table
BUSY_TIMEOUT_S = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets (
    fingerprint TEXT PRIMARY KEY,
    name TEXT,
    cap_epsilon REAL,
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS spends (
    run_id TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL REFERENCES datasets(fingerprint),
    kind TEXT NOT NULL,
    recipe TEXT,
    delta REAL NOT NULL,
    private INTEGER NOT NULL,
    mechanisms TEXT NOT NULL,
    reserved TEXT,
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS spends_by_dataset ON spends(fingerprint);
CREATE TABLE IF NOT EXISTS overlaps (
    fingerprint TEXT NOT NULL REFERENCES datasets(fingerprint),
    other TEXT NOT NULL REFERENCES datasets(fingerprint),
    identical INTEGER NOT NULL,
    resized REAL NOT NULL,
    PRIMARY KEY (fingerprint, other)
);
"""


# -- the store -------------------------------------------------------------------------------------
class PrivacyLedger:
    """The per-workspace ledger in ``<workspace>/ledger.sqlite``.

    Every method opens its own connection, so one instance may be used from any thread. Writes wait
    up to a minute for another process's transaction instead of failing.

    Parameters
    ----------
    workspace : path
        The workspace folder (created if missing).
    """

    def __init__(self, workspace: str | Path) -> None:
        self.path = Path(workspace) / LEDGER_FILE
        self._local = threading.local()

    # -- connection --------------------------------------------------------------------------------
    def _connection(self, deadline: float) -> sqlite3.Connection:
        # One connection per thread, kept open: opening one and closing the last one (which
        # checkpoints the WAL) cost 15 ms a write here, against 0.3 ms on an open connection.
        connection = getattr(self._local, "connection", None)
        if connection is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            try:
                # On a fresh file, SQLite answers the losers of the race to switch it to WAL with
                # SQLITE_BUSY at once, without calling the busy handler: wait for the winner here.
                _retry_while_busy(lambda: connection.execute("PRAGMA journal_mode=WAL"), deadline)
                # FULL: each commit is fsynced (0.3 ms here), so not even a power cut loses a recorded spend.
                connection.execute("PRAGMA synchronous=FULL")
                connection.execute("PRAGMA foreign_keys=ON")
            except BaseException:
                connection.close()
                raise
            self._local.connection = connection
        return connection

    def close(self) -> None:
        """Close this thread's connection (others close when their thread's ledger is collected)."""
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            self._local.connection = None
            connection.close()

    @contextmanager
    def _connect(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        started = time.monotonic()
        try:
            connection = self._connection(started + BUSY_TIMEOUT_S)
        except sqlite3.Error as error:
            self.close()
            raise self._error(error, started) from None
        try:
            # IMMEDIATE takes the write lock at BEGIN: a check-then-write cannot interleave with another.
            connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                if connection.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                    self._create_schema(connection, write=write)
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        except sqlite3.Error as error:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise self._error(error, started) from None

    def _create_schema(self, connection: sqlite3.Connection, *, write: bool) -> None:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RunError(f"{self.path} was written by a newer version (schema {version})",
                           remedy="upgrade dpsad-core to read this ledger")
        if not write:
            # A reader of a fresh ledger sees empty tables; only a writer creates them.
            connection.execute("ROLLBACK")
            connection.execute("BEGIN IMMEDIATE")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                connection.execute(statement)
        connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _error(self, error: sqlite3.Error, started: float) -> DpsadError:
        code = getattr(error, "sqlite_errorcode", None)
        # The file system refused, not the ledger: a file-system error (exit 9), like any other full disk.
        if code == sqlite3.SQLITE_FULL:
            return storage_error(OSError(errno.ENOSPC, str(error), str(self.path)))
        if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN):
            return StorageError(f"the privacy ledger {self.path} cannot be written ({error}): its folder is "
                                "read-only, not yours, or missing", path=self.path,
                                remedy="make the workspace writable, or choose another (--workspace)")
        if _is_busy(error):
            waited = time.monotonic() - started  # what really happened, not the timeout we meant to allow
            return RunError(f"the privacy ledger {self.path} stayed locked by another process; gave up after "
                            f"{waited:.1f} s ({error})", remedy="try again when the other run has started")
        return RunError(f"the privacy ledger {self.path} cannot be used ({error})",
                        remedy="restore it from a backup; never delete it, it is the record of what was spent")

    # -- writing -----------------------------------------------------------------------------------
    def record_spend(self, *, run_id: str, dataset_fingerprint: str, kind: str, delta: float,
                     mechanisms: Sequence[Mechanism], private: bool = True, dataset_name: str | None = None,
                     recipe: str | None = None, finished: bool = False) -> None:
        """Replace ``run_id``'s entry with its whole spend so far (not an increment).

        Parameters
        ----------
        run_id, dataset_fingerprint, kind, delta
            Which run, on which data, of what kind (``"train"``, ``"rdm"``), at which delta.
        mechanisms : sequence of Mechanism
            Everything the run spent so far.
        private : bool
            False when a part read the data without protection (the dataset's total becomes infinite).
        dataset_name, recipe : str, optional
            For display.
        finished : bool
            The run ended (finished, stopped or failed): its reservation is dropped.
        """
        row = _spend_row(run_id=run_id, dataset_fingerprint=dataset_fingerprint, kind=kind, delta=delta,
                         mechanisms=mechanisms, private=private, recipe=recipe)
        with self._connect(write=True) as connection:
            self._touch_dataset(connection, dataset_fingerprint, dataset_name)
            self._check_owner(connection, run_id, dataset_fingerprint)
            connection.execute(
                "INSERT INTO spends (run_id, fingerprint, kind, recipe, delta, private, mechanisms, reserved, created,"
                " updated) VALUES (:run_id, :fingerprint, :kind, :recipe, :delta, :private, :mechanisms, NULL,"
                " :now, :now) ON CONFLICT(run_id) DO UPDATE SET kind=excluded.kind, recipe=excluded.recipe,"
                " delta=excluded.delta, private=excluded.private, mechanisms=excluded.mechanisms,"
                " updated=excluded.updated" + (", reserved=NULL" if finished else ""), row)

    def reserve(self, *, run_id: str, dataset_fingerprint: str, kind: str, delta: float,
                planned: Sequence[Mechanism], private: bool = True, dataset_name: str | None = None,
                recipe: str | None = None) -> BudgetCheck:
        """Check the budget and reserve ``planned`` for ``run_id`` in one transaction.

        Two processes cannot both pass the check on the same remaining budget. The run's existing
        spend is kept and its own earlier entry is not counted against it (a resume replaces it).

        Raises
        ------
        PrivacyBudgetError
            If the dataset has a cap and the composed total would exceed it (nothing is written).
        """
        row = _spend_row(run_id=run_id, dataset_fingerprint=dataset_fingerprint, kind=kind, delta=delta,
                         mechanisms=(), private=private, recipe=recipe)
        row["reserved"] = json.dumps([m.to_dict() for m in planned])
        with self._connect(write=True) as connection:
            check = self._check(connection, dataset_fingerprint, planned=list(planned), delta=delta, private=private,
                                run_id=run_id)
            self._touch_dataset(connection, dataset_fingerprint, dataset_name)
            self._check_owner(connection, run_id, dataset_fingerprint)
            connection.execute(
                "INSERT INTO spends (run_id, fingerprint, kind, recipe, delta, private, mechanisms, reserved, created,"
                " updated) VALUES (:run_id, :fingerprint, :kind, :recipe, :delta, :private, '[]', :reserved,"
                " :now, :now) ON CONFLICT(run_id) DO UPDATE SET reserved=excluded.reserved,"
                " private=excluded.private, updated=excluded.updated", row)
        return check

    def drop_reservation(self, run_id: str) -> None:
        """Drop ``run_id``'s reservation and keep its spend (a run that failed or was aborted mid-step)."""
        with self._connect(write=True) as connection:
            connection.execute("UPDATE spends SET reserved=NULL, updated=? WHERE run_id=?", (_utc_now(), run_id))

    def set_cap(self, dataset_fingerprint: str, epsilon: float | None, *, dataset_name: str | None = None) -> None:
        """Set (or with ``None`` remove) the dataset's budget cap: the most its composed total may reach."""
        if epsilon is not None and (isinstance(epsilon, bool) or not isinstance(epsilon, (int, float))
                                    or not math.isfinite(epsilon) or epsilon <= 0):
            raise ConfigError(f"a budget cap must be a finite epsilon > 0, got {epsilon!r}", field="cap",
                              value=epsilon, remedy="e.g. --cap 8, or --remove-cap for no cap")
        with self._connect(write=True) as connection:
            self._touch_dataset(connection, dataset_fingerprint, dataset_name)
            connection.execute("UPDATE datasets SET cap_epsilon=?, updated=? WHERE fingerprint=?",
                               (None if epsilon is None else float(epsilon), _utc_now(), dataset_fingerprint))

    def link_overlaps(self, dataset_fingerprint: str, overlaps: Sequence[Any], *,
                      dataset_name: str | None = None) -> None:
        """Record that the dataset shares records with each of ``overlaps``
        (:class:`~dpsad_core.data.identity.Overlap`); from now on their spends compose with each other."""
        if not overlaps:
            return
        now = _utc_now()
        with self._connect(write=True) as connection:
            self._touch_dataset(connection, dataset_fingerprint, dataset_name)
            for overlap in overlaps:
                self._touch_dataset(connection, overlap.fingerprint, overlap.name)
                for one, other in ((dataset_fingerprint, overlap.fingerprint),
                                   (overlap.fingerprint, dataset_fingerprint)):
                    connection.execute("INSERT INTO overlaps (fingerprint, other, identical, resized) VALUES "
                                       "(?, ?, ?, ?) ON CONFLICT(fingerprint, other) DO UPDATE SET "
                                       "identical=max(identical, excluded.identical), "
                                       "resized=max(resized, excluded.resized)",
                                       (one, other, int(overlap.exact), float(overlap.resized)))
            connection.execute("UPDATE datasets SET updated=? WHERE fingerprint=?", (now, dataset_fingerprint))

    def overlaps(self, dataset_fingerprint: str) -> list[dict[str, Any]]:
        """The datasets that share records with this one: ``fingerprint``, ``name``, ``identical``, ``resized``."""
        with self._connect(write=False) as connection:
            if not _has_tables(connection):
                return []
            rows = connection.execute(
                "SELECT o.other, d.name, o.identical, o.resized FROM overlaps o LEFT JOIN datasets d "
                "ON d.fingerprint = o.other WHERE o.fingerprint=? ORDER BY d.name, o.other",
                (dataset_fingerprint,)).fetchall()
        return [{"fingerprint": fp, "name": name, "identical": identical, "resized": resized}
                for fp, name, identical, resized in rows]

    @staticmethod
    def _touch_dataset(connection: sqlite3.Connection, fingerprint: str, name: str | None) -> None:
        _check_part(fingerprint, name="dataset_fingerprint")
        connection.execute("INSERT INTO datasets (fingerprint, name, cap_epsilon, updated) VALUES (?, ?, NULL, ?)"
                           " ON CONFLICT(fingerprint) DO UPDATE SET name=coalesce(excluded.name, datasets.name)",
                           (fingerprint, name, _utc_now()))

    def _check_owner(self, connection: sqlite3.Connection, run_id: str, fingerprint: str) -> None:
        found = connection.execute("SELECT fingerprint FROM spends WHERE run_id=?", (run_id,)).fetchone()
        if found is not None and found[0] != fingerprint:
            raise RunError(f"run {run_id} is recorded in {self.path} against another dataset ({found[0]})",
                           remedy="a run reads one dataset: use a new run id for other data")

    # -- reading -----------------------------------------------------------------------------------
    def check_budget(self, dataset_fingerprint: str, *, planned: Sequence[Mechanism], delta: float,
                     private: bool = True, run_id: str | None = None) -> BudgetCheck:
        """Whether ``planned`` fits under the dataset's cap, composed with everything committed.

        ``run_id``'s own entry (if any) is left out: checking a resume does not count it twice.

        Raises
        ------
        PrivacyBudgetError
            With the numbers (committed so far, planned, projected total, cap, remaining).
        """
        with self._connect(write=False) as connection:
            return self._check(connection, dataset_fingerprint, planned=list(planned), delta=delta,
                               private=private, run_id=run_id)

    def _check(self, connection: sqlite3.Connection, fingerprint: str, *, planned: list[Mechanism], delta: float,
               private: bool, run_id: str | None) -> BudgetCheck:
        """The check against the dataset's own cap, after the caps of every dataset it overlaps (raising on any)."""
        _check_delta(delta)
        for other in (_related(connection, fingerprint) if _has_tables(connection) else ()):
            self._check_one(connection, other, planned=planned, delta=delta, private=private, run_id=run_id,
                            via=fingerprint)
        return self._check_one(connection, fingerprint, planned=planned, delta=delta, private=private, run_id=run_id)

    def _check_one(self, connection: sqlite3.Connection, fingerprint: str, *, planned: list[Mechanism],
                   delta: float, private: bool, run_id: str | None, via: str | None = None) -> BudgetCheck:
        name, cap = self._dataset_row(connection, fingerprint)
        others = [entry for entry in self._entries(connection, fingerprint) if entry.run_id != run_id]
        if cap is None:
            return BudgetCheck(fingerprint, None, None, None, None)
        projected, _ = compose_entries(others, extra=planned, extra_delta=delta, extra_private=private,
                                       committed=True)
        before, _ = compose_entries(others, extra_delta=projected.delta, committed=True)
        alone, _ = compose_entries([], extra=planned, extra_delta=delta, extra_private=private)
        check = BudgetCheck(fingerprint, cap, before, alone, projected)
        if check.fits:
            return check
        label = f"{name} ({fingerprint[:20]}...)" if name else fingerprint
        if via is not None:
            label += " (it shares records with the data of this run)"
        ref = name or fingerprint  # what `dpsad-core ledger` accepts for this dataset
        if not projected.private:
            culprits = [entry.run_id for entry in others if not entry.private]
            why = (f"run(s) {', '.join(culprits)} on it were not differentially private, so its total is already "
                   "infinite" if culprits else "the planned run is not differentially private (epsilon = infinity)")
            raise PrivacyBudgetError(f"dataset {label} has a privacy budget cap of epsilon {cap:g}, and {why}",
                                     remedy="use a differentially private recipe, or remove the cap with: "
                                            f"dpsad-core ledger {ref} --remove-cap (if your data governance "
                                            "allows it)")
        raise PrivacyBudgetError(
            f"dataset {label}: this run would bring the total epsilon to {projected.certified:.4g} (delta "
            f"{projected.delta:g}), over the cap of {cap:g}: {before.certified:.4g} is already spent or reserved by "
            f"{len(others)} run(s), this run plans {alone.certified:.4g}, and {max(0.0, cap - before.certified):.4g} "
            "is left", remedy="lower --epsilon or --max-steps until the run fits, or raise the cap with: "
                              f"dpsad-core ledger {ref} --cap EPSILON (if your data governance allows it)")

    def summary(self, dataset_fingerprint: str, *, accountants: Sequence[str] = ACCOUNTANTS) -> LedgerSummary:
        """The dataset's composed spend over all runs, its cap and what is left."""
        with self._connect(write=False) as connection:
            name, cap = self._dataset_row(connection, dataset_fingerprint)
            entries = tuple(self._entries(connection, dataset_fingerprint))
        spent, note = compose_entries(entries, accountants=accountants)
        committed, committed_note = spent, None
        if any(entry.active for entry in entries):
            committed, committed_note = compose_entries(entries, committed=True, accountants=accountants)
        notes = tuple(dict.fromkeys(n for n in (note, committed_note) if n))
        return LedgerSummary(dataset_fingerprint, name, cap, spent, committed, entries, notes)

    def datasets(self) -> list[dict[str, Any]]:
        """Every dataset in the ledger: ``fingerprint``, ``name``, ``cap_epsilon``, ``runs`` (cheap: no epsilon)."""
        with self._connect(write=False) as connection:
            rows = connection.execute(
                "SELECT d.fingerprint, d.name, d.cap_epsilon, count(s.run_id) FROM datasets d LEFT JOIN spends s "
                "ON s.fingerprint = d.fingerprint GROUP BY d.fingerprint ORDER BY d.name, d.fingerprint").fetchall()
        return [{"fingerprint": fp, "name": name, "cap_epsilon": cap, "runs": runs} for fp, name, cap, runs in rows]

    def entries(self, dataset_fingerprint: str | None = None) -> list[LedgerEntry]:
        """The recorded runs (of one dataset, or all), oldest first."""
        with self._connect(write=False) as connection:
            return self._entries(connection, dataset_fingerprint)

    def _dataset_row(self, connection: sqlite3.Connection, fingerprint: str) -> tuple[str | None, float | None]:
        if not _has_tables(connection):
            return None, None
        row = connection.execute("SELECT name, cap_epsilon FROM datasets WHERE fingerprint=?",
                                 (fingerprint,)).fetchone()
        return (row[0], row[1]) if row else (None, None)

    def _entries(self, connection: sqlite3.Connection, fingerprint: str | None) -> list[LedgerEntry]:
        if not _has_tables(connection):
            return []
        query = ("SELECT run_id, fingerprint, kind, recipe, delta, private, mechanisms, reserved, created, updated "
                 "FROM spends")
        # A dataset's runs include those on every dataset that shares records with it.
        rows = (connection.execute(query + " WHERE fingerprint=? OR fingerprint IN (SELECT other FROM overlaps WHERE "
                                           "fingerprint=?) ORDER BY created, run_id", (fingerprint, fingerprint))
                if fingerprint is not None else connection.execute(query + " ORDER BY created, run_id"))
        entries = []
        for run_id, fp, kind, recipe, delta, private, mechanisms, reserved, created, updated in rows:
            try:
                entries.append(LedgerEntry(
                    run_id=run_id, dataset_fingerprint=fp, kind=kind, recipe=recipe, delta=float(delta),
                    private=bool(private), mechanisms=tuple(Mechanism.from_dict(m) for m in json.loads(mechanisms)),
                    reserved=None if reserved is None else tuple(Mechanism.from_dict(m) for m in json.loads(reserved)),
                    created=created, updated=updated))
            except (ValueError, TypeError, ConfigError) as error:
                raise RunError(f"the privacy ledger {self.path} holds an unreadable entry for run {run_id} ({error})",
                               remedy="restore the ledger from a backup") from None
        return entries


def _related(connection: sqlite3.Connection, fingerprint: str) -> list[str]:
    return [row[0] for row in connection.execute("SELECT other FROM overlaps WHERE fingerprint=? ORDER BY other",
                                                 (fingerprint,))]


def _is_busy(error: sqlite3.Error) -> bool:
    return "locked" in str(error) or "busy" in str(error)


def _retry_while_busy(statement: Callable[[], object], deadline: float) -> None:
    """Run ``statement``, again after a short pause while SQLite says busy, until ``deadline`` (monotonic)."""
    pause = 0.001
    while True:
        try:
            statement()
            return
        except sqlite3.OperationalError as error:
            remaining = deadline - time.monotonic()
            if not _is_busy(error) or remaining <= 0:
                raise
        time.sleep(min(pause, remaining))
        pause = min(pause * 2, 0.1)


def _has_tables(connection: sqlite3.Connection) -> bool:
    return bool(connection.execute("PRAGMA user_version").fetchone()[0] >= 1)


def _spend_row(*, run_id: str, dataset_fingerprint: str, kind: str, delta: float, mechanisms: Sequence[Mechanism],
               private: bool, recipe: str | None) -> dict[str, Any]:
    _check_part(run_id, name="run_id")
    _check_part(kind, name="kind")
    for mechanism in mechanisms:
        if not isinstance(mechanism, Mechanism):
            raise ConfigError(f"expected a Mechanism, got {mechanism!r}", field="mechanisms", value=mechanism)
    if not isinstance(private, bool):
        raise ConfigError(f"private must be True or False, got {private!r}", field="private", value=private)
    return {"run_id": run_id, "fingerprint": _check_part(dataset_fingerprint, name="dataset_fingerprint"),
            "kind": kind, "recipe": recipe, "delta": _check_delta(delta), "private": int(private),
            "mechanisms": json.dumps([m.to_dict() for m in mechanisms]), "now": _utc_now()}


def _utc_now() -> str:
    import datetime as _dt

    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")
