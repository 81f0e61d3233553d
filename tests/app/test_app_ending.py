"""Ending the app by a signal (SIGTERM: logout, shutdown, kill) ends its child processes too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads children from /proc (Linux)")


def child_pids(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found |= {int(child) for child in (task / "children").read_text().split()}
        except OSError:
            continue
    return found


def running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_sigterm_quits_cleanly_and_leaves_no_child_running(workspace, tmp_path):
    env = os.environ | {"QT_QPA_PLATFORM": "offscreen", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    log = tmp_path / "stderr.txt"  # a file, not a pipe: children that outlive the app would hold a pipe open
    with open(log, "wb") as stderr:
        app = subprocess.Popen([sys.executable, "-m", "dpsad_workbench", "--workspace", str(workspace)], env=env,
                               stdout=subprocess.DEVNULL, stderr=stderr)
    children: set[int] = set()
    try:
        deadline = time.monotonic() + 90
        # The first plan preview starts the helper process soon after the window opens.
        while time.monotonic() < deadline and not children and app.poll() is None:
            children = child_pids(app.pid)
            time.sleep(0.2)
        assert children, "the app started no child process"
        time.sleep(1.0)  # let the helper get busy with the preview
        children |= child_pids(app.pid)
        app.send_signal(signal.SIGTERM)
        code = app.wait(timeout=60)
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(running(pid) for pid in children):
        time.sleep(0.2)
    left = [pid for pid in children if running(pid)]
    for pid in left:  # never leave a stray process behind, even when the test fails
        os.kill(pid, signal.SIGKILL)
    assert not left, f"child processes still running after the app ended: {left}"
    assert code == 0, log.read_text(errors="replace")  # quit through Qt, not killed by the signal (-15)
