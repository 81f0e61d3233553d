"""bench/gpu_check.sh: one JSON summary, exit 0 without CUDA, and a failing step reported instead of fatal."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "gpu_check.sh"
sys.path.insert(0, str(ROOT / "bench"))

import gpu_check  # noqa: E402 - needs the sys.path line above

torch = pytest.importorskip("torch")
needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the check would run")


def run_script(tmp_path: Path, path: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([shutil.which("bash"), str(SCRIPT)], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PATH=path, **env), cwd=tmp_path)


def only_json_line(stdout: str) -> dict:
    lines = stdout.strip().splitlines()
    assert len(lines) == 1, stdout
    return json.loads(lines[0])


def test_without_an_nvidia_driver_it_says_so_in_one_json_line_and_exits_0(tmp_path):
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("dirname", "date", "timeout", "mktemp", "grep", "tail", "rm", "cat"):
        found = subprocess.run(["bash", "-c", f"command -v {tool}"], capture_output=True, text=True).stdout.strip()
        if found:
            (bare / tool).symlink_to(found)
    done = run_script(tmp_path, str(bare))  # no nvidia-smi on this PATH
    assert done.returncode == 0, done.stderr
    summary = only_json_line(done.stdout)
    assert summary["cuda"] is False
    assert "nvidia-smi not found" in summary["reason"]


@needs_no_cuda
def test_with_a_driver_but_no_cuda_torch_the_python_check_says_so_and_exits_0(tmp_path):
    # A driver that lists a GPU, and a torch that sees none (this machine's CPU build): the script
    # reaches bench/gpu_check.py, which reports what torch sees and measures nothing.
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text("#!/bin/sh\necho 'GPU 0: Pretend GPU (UUID: GPU-0)'\n")
    (fake / "nvidia-smi").chmod(0o755)
    done = run_script(tmp_path, f"{fake}:{os.environ['PATH']}", GPU_CHECK_PYTHON=sys.executable,
                      GPU_CHECK_BUDGET="200")
    assert done.returncode == 0, done.stderr
    summary = only_json_line(done.stdout)
    assert summary["cuda"] is False
    assert summary["torch"] == torch.__version__
    assert summary["setup"]["gpus"].startswith("GPU 0: Pretend GPU")
    assert summary["status"] == "no CUDA: nothing was measured"
    assert "steps" not in summary


def test_a_failing_or_slow_step_is_reported_not_raised():
    failed = gpu_check.run_step([sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"], limit=30)
    assert failed["ok"] is False and failed["status"] == "exit 3" and "boom" in failed["output_tail"]
    slow = gpu_check.run_step([sys.executable, "-c", "import time; print('started', flush=True); time.sleep(30)"],
                              limit=1)
    assert slow["ok"] is False and slow["status"].startswith("timed out")
    assert "stdout" not in gpu_check.public(slow)


def test_the_step_boxes_fit_the_budget():
    caps = gpu_check.caps_for(300)
    assert sum(caps.values()) == pytest.approx(300)
    assert gpu_check.caps_for(10_000) == {name: float(cap) for name, cap in gpu_check.CAPS.items()}


def test_missing_mnist_skips_the_run_without_failing(tmp_path):
    step = gpu_check.mnist_steps(tmp_path / "absent", dp_step_s=0.1, train_limit=10, evaluate_limit=10,
                                 scratch=tmp_path)
    assert step["ok"] is True and step["status"].startswith("skipped: no MNIST")


def test_last_json_takes_the_final_object_line():
    assert gpu_check.last_json("progress\n{\"a\": 1}\nnoise\n{\"b\": 2}\n") == {"b": 2}
    assert gpu_check.last_json("no json here") is None


def test_the_summary_reads_the_numbers_the_steps_print(monkeypatch, tmp_path):
    # What bench/step_time.py, train --json and evaluate --json print on their last line (shortened).
    step_time = {"denoise_ratio": 1.2, "student_ratio": 1.25, "denoise_dp_s": 0.5, "ddim_images_per_s": 900.0,
                 "peak_memory_mib": 2048.0}
    train = {"run_id": "r1", "epsilon": 3.5, "delta": 1e-5, "train_seconds": 80.0, "device": "cuda"}
    evaluation = {"downstream": {"cnn": {"accuracy": 0.91}, "logistic": {"accuracy": 0.88}}}
    commands = []

    def fake_run_step(command, *, limit, env=None):
        commands.append(command)
        printed = step_time if "bench/step_time.py" in command else train if "train" in command else evaluation
        return {"ok": True, "status": "ok", "seconds": 1.0, "stdout": "progress\n" + json.dumps(printed) + "\n"}

    monkeypatch.setattr(gpu_check, "run_step", fake_run_step)
    timing = gpu_check.step_time_step("standard", 60, "cuda")
    assert timing["numbers"]["peak_memory_mib"] == 2048.0 and timing["target_ratio_at_most_1_3"] is True
    assert "stdout" not in timing
    mnist = tmp_path / "mnist"
    mnist.mkdir()
    (mnist / "train-images-idx3-ubyte.gz").write_bytes(b"")
    record = gpu_check.mnist_steps(mnist, dp_step_s=0.5, train_limit=100, evaluate_limit=50, scratch=tmp_path)
    assert record["ok"] is True and record["max_steps"] == 120  # 60% of the 100 s box at 0.5 s per step
    assert record["downstream_accuracy"] == {"cnn": 0.91, "logistic": 0.88} and record["epsilon_spent"] == 3.5
    train_command = commands[-2]
    assert train_command[train_command.index("--max-steps") + 1] == "120"
    assert train_command[train_command.index("--epsilon") + 1] == "10"
    assert train_command[train_command.index("--preset") + 1] == "standard"
    assert commands[-1][commands[-1].index("--device") + 1] == "cuda"
