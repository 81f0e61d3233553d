"""``dpsad-workbench``: start the desktop app, or explain in a dialog why it cannot start.

A gui-script has no console, so a failure to start (a broken settings file, a missing Qt library)
is shown in a startup-error dialog when Qt itself works, and printed to stderr in every case.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

_STARTED = time.perf_counter()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dpsad-workbench", description="The DP-SAD desktop workbench.")
    parser.add_argument("--workspace", metavar="DIR", help="use this workspace (default: the one in Settings)")
    parser.add_argument("--screen", choices=["datasets", "new_run", "training", "runs", "export", "settings"],
                        help="open on this screen")
    parser.add_argument("--quit-after", type=float, metavar="SECONDS",
                        help="close after this many seconds (smoke tests of packaged builds)")
    parser.add_argument("--self-test", action="store_true",
                        help="train a tiny run on the embedded digits in a temporary workspace from the New run "
                             "screen and exit 0 when it finishes (checks that a packaged build can train)")
    return parser


def main(argv: list[str] | None = None) -> int:
    import multiprocessing

    multiprocessing.freeze_support()  # the training child process of a frozen (PyInstaller) build
    args = build_parser().parse_args(argv)
    try:
        from PySide6.QtWidgets import QApplication
    except ImportError as error:
        print(f"dpsad-workbench: cannot start: {error} (install the gui extra: pip install 'dpsad-workbench[gui]')",
              file=sys.stderr)
        return 3
    if args.self_test:
        import tempfile

        scratch = Path(tempfile.mkdtemp(prefix="dpsad-self-test-"))
        os.environ["DPSAD_WORKSPACE"] = str(scratch / "workspace")
        os.environ["DPSAD_CONFIG_DIR"] = str(scratch / "config")
    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(sys.argv[:1])
    app.setApplicationName("DP-SAD Workbench")
    app.setOrganizationName("dpsad")
    app.setDesktopFileName("dpsad-workbench")
    try:
        window = create_window(workspace=args.workspace)
    except Exception as error:  # noqa: BLE001 - any failure to start must reach the user
        show_startup_error(error)
        return 1
    from dpsad_workbench.worker import end_children

    app.aboutToQuit.connect(end_children)
    quit_on_signals(app, window)
    if args.screen:
        window.show_screen(args.screen)
    window.show()
    if os.environ.get("DPSAD_WORKBENCH_REPORT_STARTUP"):
        print(f"first window after {time.perf_counter() - _STARTED:.3f} s", file=sys.stderr, flush=True)
    if args.self_test:
        return _self_test(app, window)
    if args.quit_after is not None:
        from PySide6.QtCore import QTimer

        QTimer.singleShot(int(args.quit_after * 1000), window.close)
    return app.exec()


def quit_on_signals(app, window) -> None:
    """SIGTERM, SIGINT and SIGHUP end the app as closing its window does, without asking.

    Python runs signal handlers only when it gets control, and Qt's event loop is C++: the handler
    is woken through a socket the event loop watches (``signal.set_wakeup_fd``). The window stops
    a training run at a step boundary (a checkpoint), then ``aboutToQuit`` ends every child.
    """
    import signal
    import socket

    from PySide6.QtCore import QSocketNotifier

    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    signal.set_wakeup_fd(writer.fileno())

    def handle(signum, frame) -> None:  # the signal module's signature
        window.terminate()
        app.quit()

    for name in ("SIGTERM", "SIGINT", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), handle)
    notifier = QSocketNotifier(reader.fileno(), QSocketNotifier.Type.Read, app)

    def drain() -> None:  # the bytes only woke the event loop; Python has run the handler by now
        try:
            while reader.recv(512):
                pass
        except OSError:
            pass

    notifier.activated.connect(drain)
    app._signal_wakeup = (reader, writer, notifier)  # kept alive as long as the app


def _self_test(app, window) -> int:
    from PySide6.QtCore import QTimer

    screen = window.new_run
    screen.select_data("demo")
    screen.preset.setCurrentIndex(screen.preset.findData("tiny"))
    screen.max_steps.setValue(2)
    outcome = {"state": "timed out"}

    def on_state(state: str) -> None:
        if state in ("finished", "failed", "cancelled", "interrupted"):
            outcome["state"] = state
            window.close()

    window.controller.state_changed.connect(on_state)
    window.controller.failed.connect(lambda error: print(f"self-test: {error}", file=sys.stderr))
    QTimer.singleShot(600_000, window.close)
    QTimer.singleShot(0, screen.start_button.click)
    app.exec()
    print(f"self-test: training {outcome['state']} (run {window.controller.run_id})", file=sys.stderr)
    return 0 if outcome["state"] == "finished" else 1


def create_window(*, workspace: str | None = None):
    """The main window with the saved settings (``workspace`` overrides theirs for this session)."""
    import dataclasses

    from PySide6.QtWidgets import QApplication

    from dpsad_workbench.icon import app_icon
    from dpsad_workbench.settings import load_settings
    from dpsad_workbench.window import MainWindow

    QApplication.setWindowIcon(app_icon())
    settings = load_settings()
    if workspace:
        settings = dataclasses.replace(settings, workspace=workspace)
    return MainWindow(settings)


def show_startup_error(error: BaseException) -> None:
    """Print the reason and show it in a dialog (blocking: the app has nothing else to show)."""
    from dpsad_workbench.dialogs import describe_error

    title, text, details = describe_error(error)
    print(f"dpsad-workbench: cannot start: {text}", file=sys.stderr)
    if details:
        print(details, file=sys.stderr)
    from PySide6.QtWidgets import QMessageBox

    box = QMessageBox(QMessageBox.Icon.Critical, f"DP-SAD Workbench cannot start ({title})", text)
    box.setObjectName("startupErrorDialog")
    if details:
        box.setDetailedText(details)
    if os.environ.get("QT_QPA_PLATFORM") != "offscreen":
        box.exec()


if __name__ == "__main__":
    sys.exit(main())
