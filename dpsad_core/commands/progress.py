"""The one terminal view of the core's event streams (training, DP-RDM, audit, export, evaluation).

Every long sub-command passes its events through :func:`show_progress` and keeps only the events that
end it (``RunFinished``, ``RunInterrupted``, ``ExportFinished``, ...): how progress looks on a terminal is
decided here once, as the workbench's worker thread decides it once for the GUI. On a terminal a tqdm
bar follows the steps or images; off one (a log file, CI, ``nohup``) tqdm stays silent, so a plain line
is printed every :data:`PLAIN_LINE_SECONDS` and at the end of each phase. Everything goes to stderr:
stdout is kept for results (``--json`` prints one object there).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

#: Off a terminal, at most one progress line per this many seconds (plus one at the end of a phase).
PLAIN_LINE_SECONDS = 30.0


def resume_hint(event) -> str:
    """What a stopped training run prints: where it stopped and the command that continues it."""
    return (f"run {event.run_id} stopped at {event.phase} step {event.step}; "
            f"resume with: dpsad-core train --resume {event.run_id}")


def show_progress(events: Iterable[Any], *, interrupted: Callable[[Any], str] = resume_hint,
                  clock: Callable[[], float] = time.monotonic) -> Iterator[Any]:
    """Yield every event of ``events`` after showing it on stderr.

    ``interrupted`` turns a ``RunInterrupted`` into the line that tells the user what to do next.
    """
    view = _TerminalView(plain=not sys.stderr.isatty(), clock=clock)
    try:
        for event in events:
            view.show(event, interrupted)
            yield event
    finally:
        view.close()


class _TerminalView:
    def __init__(self, *, plain: bool, clock: Callable[[], float]) -> None:
        self.plain, self.clock = plain, clock
        self.bar: Any = None
        self.last_line = -math.inf

    def show(self, event: Any, interrupted: Callable[[Any], str]) -> None:
        from dpsad_core.evaluation.audit_run import AuditPrepared
        from dpsad_core.evaluation.report import EvaluationStage
        from dpsad_core.events import (
            ExportProgress,
            ExportStarted,
            PhaseStarted,
            RunInterrupted,
            RunStarted,
            StepCompleted,
        )

        if isinstance(event, RunStarted):
            _say(f"{'resuming' if event.resumed else 'started'} run {event.run_id} in {event.run_dir}")
            for warning in event.plan.get("warnings", []):
                _say(f"warning: {warning}")
        elif isinstance(event, PhaseStarted):
            self._new_bar(event.total_steps, event.start_step, f"{event.phase} ({event.privacy})")
            if self.plain:
                _say(f"{event.phase} ({event.privacy}): {event.total_steps} steps")
        elif isinstance(event, StepCompleted):
            self._step(event)
        elif isinstance(event, RunInterrupted):
            self.close()
            _say(interrupted(event))
        elif isinstance(event, ExportStarted):
            _say(f"exporting {event.total_images} images from run {event.run_id}")
            if not event.private:
                _say("WARNING: this run is NOT differentially private: the bundle is stamped as such")
            self._new_bar(event.total_images, 0, "sampling")
        elif isinstance(event, ExportProgress):
            self._images(event)
        elif isinstance(event, EvaluationStage):
            _say(f"[{event.index}/{event.total}] {event.detail}")
        elif isinstance(event, AuditPrepared):
            _say(f"audit: {event.canaries} {event.kind} canaries, {event.included} included; training on "
                 f"'{event.dataset_name}'")

    def _new_bar(self, total: int, initial: int, description: str) -> None:
        from tqdm import tqdm

        self.close()
        # disable=None: tqdm draws only on a terminal.
        self.bar = tqdm(total=total, initial=initial, desc=description, file=sys.stderr, dynamic_ncols=True,
                        disable=None)

    def _step(self, event) -> None:
        spent = "inf" if math.isinf(event.epsilon_spent) else f"{event.epsilon_spent:.2f}"
        loss = next(iter(event.losses.values()), None)
        status = (f"loss {loss:.4f} " if loss is not None else "") + f"eps {spent}/{event.epsilon_target:g}"
        if self.bar is not None:
            self.bar.set_postfix_str(status)
            self.bar.update(1)
        if self.plain and (self.clock() - self.last_line >= PLAIN_LINE_SECONDS or event.step == event.total_steps):
            self.last_line = self.clock()
            _say(f"{event.phase} step {event.step}/{event.total_steps}: {status}, "
                 f"about {event.eta_seconds / 60:.1f} min left")

    def _images(self, event) -> None:
        if self.bar is not None:
            self.bar.set_description(event.stage)
            self.bar.n = event.done if self.bar.total is None else min(event.done, self.bar.total)
            self.bar.refresh()
        if self.plain and (self.clock() - self.last_line >= PLAIN_LINE_SECONDS or event.done == event.total):
            self.last_line = self.clock()
            _say(f"{event.stage}: {event.done}/{event.total}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
