"""One time-boxed check of the GPU path, run by ``bench/gpu_check.sh``: prints ONE JSON summary.

The steps, each a subprocess under its own time limit (a failing or slow step is reported in the
JSON, never fatal):

1. ``pytest -m cuda tests/cuda``: device placement of every tensor in a DP step, sampling, export;
2. ``bench/step_time.py --device cuda`` for the quick and the standard preset at 28 x 28: the DP over
   non-DP step-time ratios (target at most 1.3x), the peak GPU memory, DDIM images per second;
3. one standard-preset MNIST run at epsilon 10 (dpdm), cut with ``--max-steps`` to fit its time box
   (the number of steps comes from the standard preset's measured DP step time), then
   ``dpsad-core evaluate`` for its downstream accuracy on the real MNIST test set.

Without CUDA (no GPU, or a CPU build of torch) it prints ``{"cuda": false, ...}`` and exits 0.
Exit code: 0 when every step passed (or no CUDA), 1 when a step failed or timed out.

Usage: python bench/gpu_check.py [--budget 440] [--mnist ../shared/data/mnist] [--rehearse-on-cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MNIST = ROOT.parent / "shared" / "data" / "mnist"
# Nominal seconds per step; scaled down together when the budget is smaller than their sum.
CAPS = {"pytest": 75, "step_time_quick": 60, "step_time_standard": 80, "train": 140, "evaluate": 85}
TRAIN_SHARE_OF_BOX = 0.6   # of the train step's box, spent in DP steps (start-up, planning and saving take the rest)
OUTPUT_TAIL = 1500         # characters of a failed step's output kept in the JSON


def cuda_facts() -> dict:
    """What torch sees; ``cuda`` is False on a CPU build of torch or without a usable GPU."""
    import torch

    facts = {"torch": torch.__version__, "torch_cuda_build": torch.version.cuda, "cuda": torch.cuda.is_available()}
    if facts["cuda"]:
        properties = torch.cuda.get_device_properties(0)
        facts.update(gpu=properties.name, gpu_count=torch.cuda.device_count(),
                     gpu_memory_gib=round(properties.total_memory / 2 ** 30, 1),
                     compute_capability=f"{properties.major}.{properties.minor}")
    elif torch.version.cuda is None:
        facts["reason"] = (f"this torch build ({torch.__version__}) has no CUDA: on the GPU machine run "
                           "`make clean && make .venv/.test TORCH_SPEC=torch` (pip then picks a CUDA build)")
    else:
        facts["reason"] = "torch has CUDA support but sees no usable GPU (driver missing, or CUDA_VISIBLE_DEVICES)"
    return facts


def run_step(command: list[str], *, limit: float, env: dict | None = None) -> dict:
    """Run ``command`` for at most ``limit`` seconds: its status, seconds and (on failure) its output's tail."""
    start = time.monotonic()
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=max(1.0, limit))
    except subprocess.TimeoutExpired as expired:
        output = (expired.stdout or b"") if isinstance(expired.stdout, bytes) else (expired.stdout or "")
        text = output.decode(errors="replace") if isinstance(output, bytes) else output
        return {"ok": False, "status": f"timed out after {limit:.0f} s", "seconds": round(limit, 1),
                "output_tail": text[-OUTPUT_TAIL:], "stdout": text}
    seconds = round(time.monotonic() - start, 1)
    result = {"ok": done.returncode == 0, "status": "ok" if done.returncode == 0 else f"exit {done.returncode}",
              "seconds": seconds, "stdout": done.stdout}
    if done.returncode != 0:
        result["output_tail"] = (done.stdout + done.stderr)[-OUTPUT_TAIL:]
    return result


def last_json(text: str) -> dict | None:
    """The JSON object on the last line of ``text`` that holds one (None when there is none)."""
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def public(step: dict) -> dict:
    """A step's record for the summary (its full stdout is not)."""
    return {key: value for key, value in step.items() if key != "stdout"}


def pytest_step(limit: float, scratch: Path) -> dict:
    report = scratch / "cuda-tests.xml"
    step = run_step([sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider",
                     f"--junitxml={report}", "tests/cuda"], limit=limit)
    if report.is_file():
        suite = ElementTree.parse(report).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        counts = {name: int(suite.get(name, 0)) for name in ("tests", "failures", "errors", "skipped")}
        counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
        step["counts"] = counts
        # A subset that skipped everything proves nothing on a GPU machine.
        step["ok"] = step["ok"] and counts["passed"] > 0 and counts["skipped"] == 0
        if counts["skipped"] and step["status"] == "ok":
            step["status"] = "some cuda tests were skipped"
    return public(step)


def step_time_step(preset: str, limit: float, device: str) -> dict:
    step = run_step([sys.executable, "bench/step_time.py", "--device", device, "--preset", preset,
                     "--resolution", "28", "--repeats", "5", "--sample-count", "1000"], limit=limit)
    numbers = last_json(step.get("stdout", "")) if step["ok"] else None
    if step["ok"] and numbers is None:
        step.update(ok=False, status="no JSON line in the output")
    if numbers:
        step["numbers"] = {key: numbers.get(key) for key in (
            "denoise_ratio", "student_ratio", "denoise_dp_s", "denoise_plain_s", "student_dp_s", "student_plain_s",
            "student_dp_records_per_s", "ddim_images_per_s", "ddim_steps", "peak_memory_mib", "batch",
            "draws_per_record", "unet_params")}
        step["target_ratio_at_most_1_3"] = max(numbers["denoise_ratio"], numbers["student_ratio"]) <= 1.3
    return public(step)


def mnist_steps(mnist: Path, *, dp_step_s: float | None, train_limit: float, evaluate_limit: float,
                scratch: Path, device: str = "cuda") -> dict:
    """Train dpdm on MNIST at epsilon 10 (standard preset, cut to its time box) and evaluate it."""
    if not (mnist / "train-images-idx3-ubyte.gz").is_file() and not (mnist / "train-images-idx3-ubyte").is_file():
        return {"ok": True, "status": f"skipped: no MNIST IDX files in {mnist}"}
    env = dict(os.environ, DPSAD_WORKSPACE=str(scratch / "workspace"), DPSAD_CONFIG_DIR=str(scratch / "config"),
               DPSAD_CACHE_DIR=str(scratch / "cache"))
    steps = 200 if dp_step_s is None else max(10, int(train_limit * TRAIN_SHARE_OF_BOX / max(dp_step_s, 1e-3)))
    train = run_step([sys.executable, "-m", "dpsad_core", "train", "--data", str(mnist), "--recipe", "dpdm",
                      "--preset", "standard", "--epsilon", "10", "--device", device, "--max-steps", str(steps),
                      "--set", "sample_every=100000", "--json"], limit=train_limit, env=env)
    result = last_json(train.get("stdout", "")) if train["ok"] else None
    record = {"train": public(train), "max_steps": steps}
    if result is None:
        record.update(ok=False, status="training failed" if train["ok"] is False else "no result line")
        return record
    record.update(epsilon_spent=result.get("epsilon"), delta=result.get("delta"),
                  train_seconds=result.get("train_seconds"), device=result.get("device"), run_id=result["run_id"])
    evaluate = run_step([sys.executable, "-m", "dpsad_core", "evaluate", result["run_id"], "--test", str(mnist),
                         "--per-class", "100", "--min-steps", "300", "--device", device, "--json"],
                        limit=evaluate_limit, env=env)
    record["evaluate"] = public(evaluate)
    scores = last_json(evaluate.get("stdout", "")) if evaluate["ok"] else None
    if scores is not None:
        downstream = scores.get("downstream") or {}
        record["downstream_accuracy"] = {name: (downstream.get(name) or {}).get("accuracy")
                                         for name in ("cnn", "logistic")}
    record["ok"] = evaluate["ok"] and scores is not None
    record["status"] = "ok" if record["ok"] else "evaluation failed"
    return record


def caps_for(budget: float) -> dict[str, float]:
    scale = min(1.0, budget / sum(CAPS.values()))
    return {name: cap * scale for name, cap in CAPS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=float(sum(CAPS.values())),
                        help="seconds for all the steps together (default: the sum of the nominal caps)")
    parser.add_argument("--mnist", type=Path, default=DEFAULT_MNIST, help="folder of the MNIST IDX files")
    parser.add_argument("--setup-json", default="{}", help="what gpu_check.sh did before (added to the summary)")
    parser.add_argument("--rehearse-on-cpu", action="store_true",
                        help="run the same steps on the CPU (checks this script itself; measures nothing useful)")
    args = parser.parse_args(argv)
    args.mnist = args.mnist.expanduser().resolve()
    started = time.monotonic()
    summary: dict = {"check": "dpsad gpu_check", "setup": json.loads(args.setup_json)}
    summary.update(cuda_facts())
    device = "cpu" if args.rehearse_on_cpu else "cuda"
    summary["device"] = device
    if not summary["cuda"] and not args.rehearse_on_cpu:
        summary["status"] = "no CUDA: nothing was measured"
        print(json.dumps(summary))
        return 0
    caps = caps_for(args.budget)
    steps: dict = {}
    with tempfile.TemporaryDirectory(prefix="dpsad-gpu-check-") as folder:
        scratch = Path(folder)
        if not args.rehearse_on_cpu:  # without CUDA they all skip
            steps["cuda_tests"] = pytest_step(caps["pytest"], scratch)
        steps["step_time_quick"] = step_time_step("quick", caps["step_time_quick"], device)
        steps["step_time_standard"] = step_time_step("standard", caps["step_time_standard"], device)
        standard = steps["step_time_standard"].get("numbers") or {}
        steps["mnist_eps10_standard"] = mnist_steps(args.mnist, dp_step_s=standard.get("denoise_dp_s"),
                                                    train_limit=caps["train"], evaluate_limit=caps["evaluate"],
                                                    scratch=scratch, device=device)
    summary["steps"] = steps
    summary["headline"] = {
        "dp_over_plain_step_time": {preset: {key: (steps[f"step_time_{preset}"].get("numbers") or {}).get(key)
                                             for key in ("denoise_ratio", "student_ratio")}
                                    for preset in ("quick", "standard")},
        "peak_memory_mib": standard.get("peak_memory_mib"),
        "ddim_images_per_s": {preset: (steps[f"step_time_{preset}"].get("numbers") or {}).get("ddim_images_per_s")
                              for preset in ("quick", "standard")},
        "mnist_eps10_downstream_accuracy": steps["mnist_eps10_standard"].get("downstream_accuracy"),
        "mnist_eps10_epsilon_spent": steps["mnist_eps10_standard"].get("epsilon_spent"),
    }
    failed = [name for name, step in steps.items() if not step.get("ok")]
    summary["failed_steps"] = failed
    summary["status"] = "ok" if not failed else "some steps failed: " + ", ".join(failed)
    summary["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(summary))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
