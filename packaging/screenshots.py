"""Take a screenshot of every screen of the workbench into docs/screenshots/ (offscreen, no display).

It builds a throw-away workspace with the embedded digits imported, runs a training from the New run
screen, evaluates it, exports and verifies a bundle, then grabs each screen with ``QWidget.grab()``.

Usage: QT_QPA_PLATFORM=offscreen python packaging/screenshots.py [--out docs/screenshots] [--scale 2]
       [--demo-run | --preset tiny --max-steps 4]
``--demo-run`` trains the run of ``dpsad-core demo`` (``make demo``: the public-teacher recipe with the
generated font digits as public data, the quick preset, epsilon 10, every step; about 5 minutes on 2
cores), so the grids show digits: the screenshots in docs/ are taken with it. Without it, a few ``tiny``
steps check that every screen renders (seconds; its grids are noise).
``--scale 2`` sets QT_SCALE_FACTOR=2 (the 200 % layout check) and adds "@2x" to the file names;
``--also-2x`` saves each screen of the same run a second time, rendered at 200 %, as "@2x" (one training
for both sets).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

# What `dpsad-core demo` trains (cli.py's _cmd_demo): the teacher learns digit shapes from public font digits.
DEMO_RECIPE = "dpsad-public-teacher"
DEMO_PUBLIC_DATA = "rendered-digits"


def wait_until(app, predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        app.processEvents()
        time.sleep(0.02)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/screenshots")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--also-2x", action="store_true", help="also render each screen at 200 %% into *@2x.png")
    parser.add_argument("--demo-run", action="store_true",
                        help="train the demo's run to the end (recognisable digits; minutes) instead of a tiny one")
    parser.add_argument("--workspace", help="use this workspace (with the digits-demo dataset) instead of a new one")
    parser.add_argument("--resume", metavar="RUN_ID",
                        help="resume this interrupted run of --workspace to its end instead of starting one "
                             "(a --demo-run stopped before its end, say)")
    parser.add_argument("--preset", default="tiny", choices=["tiny", "quick"])
    parser.add_argument("--max-steps", type=int, default=4)
    parser.add_argument("--size", default="1200x780", help="window size in logical pixels")
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    if args.scale != 1.0:
        os.environ["QT_SCALE_FACTOR"] = f"{args.scale:g}"
    suffix = "" if args.scale == 1.0 else f"@{args.scale:g}x"
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.resume and not args.workspace:
        parser.error("--resume needs the --workspace its run is in")
    if args.workspace:
        workspace = Path(args.workspace).resolve()
        os.environ["DPSAD_WORKSPACE"] = str(workspace)
        os.environ.setdefault("DPSAD_CONFIG_DIR", str(workspace.parent / "config"))
    else:
        tmp = Path(tempfile.mkdtemp(prefix="dpsad-screens-"))
        os.environ["DPSAD_WORKSPACE"] = str(tmp / "workspace")
        os.environ["DPSAD_CONFIG_DIR"] = str(tmp / "config")

    from dpsad_core.data import load_demo, save_dataset
    from dpsad_core.data.dataset import ImageDataset

    if not (Path(os.environ["DPSAD_WORKSPACE"]) / "datasets" / "digits-demo").exists():
        demo = load_demo()
        # Saved under a friendlier name, as an analyst would import it.
        demo = ImageDataset(images=demo.images, labels=demo.labels, class_names=demo.class_names, patient_ids=None,
                            name="digits-demo", source="demo")
        save_dataset(demo, Path(os.environ["DPSAD_WORKSPACE"]))

    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv[:1])
    from dpsad_workbench.main import create_window

    window = create_window()
    width, height = (int(v) for v in args.size.split("x"))
    window.resize(width, height)
    window.show()
    shots: list[Path] = []

    def grab(name: str) -> None:
        # A size change travels up one layout per pass of the event loop: let it settle.
        for _ in range(20):
            app.processEvents()
            time.sleep(0.01)
        window.repaint()
        path = out / f"{name}{suffix}.png"
        window.grab().save(str(path))
        _compress(path)
        shots.append(path)
        if args.also_2x:
            from PySide6.QtGui import QPixmap

            pixmap = QPixmap(window.size() * 2)
            pixmap.setDevicePixelRatio(2.0)
            window.render(pixmap)
            double = out / f"{name}@2x.png"
            pixmap.save(str(double))
            _compress(double)
            shots.append(double)

    # Datasets: select the demo digits and wait for the preview and the ledger's number.
    window.show_screen("datasets")
    window.datasets.select("digits-demo")
    wait_until(app, window.datasets.preview.has_image, 300, "the dataset preview")
    wait_until(app, lambda: not window.datasets.fields["budget"].text().startswith("reading"), 300, "the ledger")
    grab("datasets")

    # New run: the plan for epsilon 8 on the digits.
    window.show_screen("new_run")
    screen = window.new_run
    screen.select_data("digits-demo")
    if args.demo_run:  # the settings of `dpsad-core demo`
        screen.recipe.setCurrentIndex(screen.recipe.findData(DEMO_RECIPE))
        app.processEvents()
        screen.public_data.setCurrentIndex(screen.public_data.findData(DEMO_PUBLIC_DATA))
        screen.preset.setCurrentIndex(screen.preset.findData("quick"))
        screen.epsilon.setValue(10.0)
        screen.max_steps.setValue(0)
    else:
        screen.preset.setCurrentIndex(screen.preset.findData(args.preset))
        screen.epsilon.setValue(8.0)
        screen.max_steps.setValue(args.max_steps)
    if screen.public_spec() != (DEMO_PUBLIC_DATA if args.demo_run else None):
        raise RuntimeError(f"the New run screen chose public data {screen.public_spec()!r}")
    ready, estimated, failed = [], [], []
    screen.plan_ready.connect(ready.append)
    screen.plan_failed.connect(failed.append)
    screen.estimate_ready.connect(estimated.append)
    screen.update_preview()
    wait_until(app, lambda: ready or failed, 300, "the plan preview")
    if failed:
        raise RuntimeError(f"the New run screen could not plan: {failed[0]}")
    if ready[0]["estimate"]["seconds"] is None:
        wait_until(app, lambda: estimated, 300, "the time estimate")
    grab("new_run")

    # Training: run it to the end from the New run screen (or resume the run named, as the Runs screen does).
    if args.resume:
        window.resume_run(args.resume)
    else:
        screen.start_button.click()
    wait_until(app, lambda: window.controller.state in ("finished", "failed"), 3600, "the training run")
    if window.controller.state != "finished":
        raise RuntimeError("the training run failed; see the dialog text above")
    wait_until(app, lambda: not window.training._dirty, 10, "the last redraw")
    grab("training")

    # Runs: evaluate the run against the demo digits' test split, as Evaluate... does.
    window.show_screen("runs")
    runs = window.runs
    runs.select(window.controller.run_id)
    evaluated = []
    runs.evaluated.connect(evaluated.append)
    runs.start_evaluation(window.controller.run_id, test="demo", per_class=20)
    wait_until(app, lambda: runs.evaluating() is None, 900, "the evaluation")
    if not evaluated:
        raise RuntimeError(f"the evaluation failed: {runs.evaluation_status.text()}")
    grab("runs")

    # Export a small bundle and verify it.
    window.show_screen("export")
    export = window.export
    if export.export_button.isEnabled():
        export.per_class.setValue(4)
        done, verified = [], []
        export.exported.connect(done.append)
        export.verified.connect(verified.append)
        export.export()
        wait_until(app, lambda: done, 600, "the export")
        export.verify(done[0]["bundle_path"])
        wait_until(app, lambda: verified, 300, "the verification")
    grab("export")

    window.show_screen("settings")
    if window.settings_screen.keys.create_button.isEnabled():
        window.settings_screen.keys.create_key()
    grab("settings")

    window.close()
    for path in shots:
        print(path)
    return 0


def _compress(path: Path) -> None:
    """Keep the committed PNGs small: the screens use few colours, so a 256-colour palette loses nothing visible."""
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    small.save(path, optimize=True)


if __name__ == "__main__":
    sys.exit(main())
