"""GUI latency benchmark (issue 4): time to the first window, and event-loop gaps while training.

1. Time to first window: starts ``python -m dpsad_workbench`` in a fresh process ``--launches`` times
   and measures from just before the process starts until the window is shown (the child prints
   the wall-clock time after ``show()`` and one pass of the event loop). Also reports whether torch
   was imported by then (it must not be).
2. Event-loop responsiveness: opens the window in this process, starts a training run from the New
   run screen exactly as a user would, and ticks a 5 ms QTimer until the run ends. The gap between
   consecutive ticks is how long the event loop could not react; the target is a longest gap under
   100 ms. It also counts how often the plots redrew (the Training screen's timer runs at 10-20 Hz).

Usage: QT_QPA_PLATFORM=offscreen python bench/gui_latency.py [--preset quick] [--max-steps 15]
       [--launches 3] [--torch-threads 1]
Prints a Markdown table and one JSON line at the end. Uses a temporary workspace and config dir.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import sys, time
from PySide6.QtWidgets import QApplication
app = QApplication(sys.argv[:1])
from dpsad_workbench.main import create_window
window = create_window()
window.show()
app.processEvents()
print(json.dumps({"shown": time.time(), "torch": "torch" in sys.modules}), flush=True)
window.close()
"""


def time_to_first_window(launches: int, env: dict[str, str]) -> dict[str, object]:
    seconds, torch_loaded = [], []
    for _ in range(launches):
        began = time.time()
        out = subprocess.run([sys.executable, "-c", "import json\n" + CHILD], env=env, capture_output=True,
                             text=True, timeout=300, check=True)
        report = json.loads(out.stdout.strip().splitlines()[-1])
        seconds.append(report["shown"] - began)
        torch_loaded.append(report["torch"])
    return {"launches": launches, "median_s": statistics.median(seconds), "max_s": max(seconds),
            "all_s": [round(s, 3) for s in seconds], "torch_imported_at_start": any(torch_loaded)}


def idle_gaps(seconds: float) -> dict[str, object]:
    """The same ticker with the window open and nothing running: the machine's own noise floor."""
    from PySide6.QtCore import QElapsedTimer, QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    from dpsad_workbench.main import create_window

    window = create_window()
    window.show()
    window.show_screen("training")
    gaps: list[float] = []
    clock = QElapsedTimer()
    last = [0]

    def tick() -> None:
        now = clock.nsecsElapsed()
        gaps.append((now - last[0]) / 1e6)
        last[0] = now

    ticker = QTimer()
    ticker.setInterval(5)
    ticker.timeout.connect(tick)
    def stop() -> None:  # stop measuring before quitting: closing the window is not idle time
        ticker.stop()
        app.quit()

    QTimer.singleShot(int(seconds * 1000), stop)
    clock.start()
    ticker.start()
    app.exec()
    ticker.stop()
    window.close()
    ordered = sorted(gaps[1:])
    return {"seconds": seconds, "ticks": len(ordered), "max_gap_ms": round(ordered[-1], 1),
            "p99_gap_ms": round(ordered[int(0.99 * (len(ordered) - 1))], 1),
            "gaps_over_100ms": sum(1 for g in ordered if g > 100)}


def training_gaps(preset: str, max_steps: int, torch_threads: int, data: str) -> dict[str, object]:
    from PySide6.QtCore import QElapsedTimer, QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    from dpsad_workbench.settings import AppSettings, save_settings

    save_settings(AppSettings(device="cpu", torch_threads=torch_threads))
    from dpsad_workbench.main import create_window

    window = create_window()
    window.show()
    screen = window.new_run
    screen.select_data(data)
    screen.preset.setCurrentIndex(screen.preset.findData(preset))
    screen.max_steps.setValue(max_steps)
    gaps: list[float] = []
    clock = QElapsedTimer()
    ticker = QTimer()
    ticker.setInterval(5)
    last = [0]
    redraws = [0]
    steps = [0]
    window.training.redrawn.connect(lambda: redraws.__setitem__(0, redraws[0] + 1))

    marks: list[tuple[float, str]] = []  # (ms since start, what happened) to place the long gaps

    def on_event(event) -> None:
        marks.append((clock.nsecsElapsed() / 1e6, type(event).__name__))
        if type(event).__name__ == "StepCompleted":
            steps[0] += 1

    window.controller.run_event.connect(on_event)

    long_gaps: list[tuple[float, float]] = []

    def tick() -> None:
        now = clock.nsecsElapsed()
        gap = (now - last[0]) / 1e6
        gaps.append(gap)
        if gap > 100:
            long_gaps.append((last[0] / 1e6, gap))
        last[0] = now

    ticker.timeout.connect(tick)
    done = {"state": None}

    def on_state(state: str) -> None:
        if state in ("finished", "failed", "cancelled", "interrupted"):
            done["state"] = state
            ticker.stop()  # the run is over; closing the window is not measured
            app.quit()

    window.controller.state_changed.connect(on_state)
    window.controller.failed.connect(lambda error: print(f"run failed: {error}", file=sys.stderr))
    clock.start()
    ticker.start()
    began = time.perf_counter()
    screen.start_button.click()
    app.exec()
    wall = time.perf_counter() - began
    ticker.stop()
    window.controller.stop_and_wait()
    window.close()
    ordered = sorted(gaps)
    placed = []
    for start, gap in long_gaps:
        before = [name for at, name in marks if at <= start]
        placed.append(f"{gap:.0f} ms at {start / 1000:.1f} s, after {before[-1] if before else 'the start click'}")
    return {"long_gaps": placed, "state": done["state"], "preset": preset, "max_steps": max_steps, "steps": steps[0],
            "wall_s": round(wall, 2), "ticks": len(gaps), "max_gap_ms": round(ordered[-1], 1),
            "p99_gap_ms": round(ordered[int(0.99 * (len(ordered) - 1))], 1),
            "median_gap_ms": round(statistics.median(ordered), 1),
            "gaps_over_100ms": sum(1 for g in gaps if g > 100), "redraws": redraws[0],
            "redraw_hz": round(redraws[0] / wall, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quick", choices=["tiny", "quick", "standard"])
    parser.add_argument("--max-steps", type=int, default=15, help="steps per phase of the measured run")
    parser.add_argument("--data", default="demo")
    parser.add_argument("--launches", type=int, default=3)
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--idle-seconds", type=float, default=10.0,
                        help="length of the idle baseline (window open, nothing running)")
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["DPSAD_WORKSPACE"] = str(Path(tmp) / "workspace")
        os.environ["DPSAD_CONFIG_DIR"] = str(Path(tmp) / "config")
        startup = time_to_first_window(args.launches, dict(os.environ))
        idle = idle_gaps(args.idle_seconds)
        gaps = training_gaps(args.preset, args.max_steps, args.torch_threads, args.data)
        with open("/proc/loadavg") if os.path.exists("/proc/loadavg") else open(os.devnull) as handle:
            load = handle.read().split()[:3]
    print("| measurement | value |\n|---|---|")
    print(f"| time to first window (median of {startup['launches']}) | {startup['median_s']:.2f} s "
          f"(max {startup['max_s']:.2f} s) |")
    print(f"| torch imported at start-up | {startup['torch_imported_at_start']} |")
    print(f"| training run | {gaps['preset']} preset, {gaps['steps']} steps, {gaps['wall_s']} s, {gaps['state']} |")
    print(f"| longest event-loop gap | {gaps['max_gap_ms']} ms (p99 {gaps['p99_gap_ms']} ms, median "
          f"{gaps['median_gap_ms']} ms, {gaps['gaps_over_100ms']} gaps over 100 ms of {gaps['ticks']}) |")
    print(f"| idle baseline (no training, {idle['seconds']:g} s) | longest gap {idle['max_gap_ms']} ms "
          f"(p99 {idle['p99_gap_ms']} ms, {idle['gaps_over_100ms']} over 100 ms) |")
    print(f"| machine load (1/5/15 min) at the end | {' '.join(load) or 'n/a'} on {os.cpu_count()} CPUs |")
    if gaps["long_gaps"]:
        print(f"| where the gaps over 100 ms were | {'; '.join(gaps['long_gaps'])} |")
    print(f"| plot redraws | {gaps['redraws']} ({gaps['redraw_hz']} per second) |")
    print(json.dumps({"startup": startup, "training": gaps, "idle": idle, "loadavg": load,
                      "python": platform.python_version(),
                      "cpus": os.cpu_count()}))
    return 0 if gaps["max_gap_ms"] < 100 and not startup["torch_imported_at_start"] else 1


if __name__ == "__main__":
    sys.exit(main())
