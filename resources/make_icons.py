"""Write the application icon: ``dpsad-workbench.svg`` and PNGs of every size, from ``app/icon.py``.

The SVG text lives in the app (so the running app needs no data files); this script renders it
with Qt's SVG renderer. Run it after changing the icon:

    QT_QPA_PLATFORM=offscreen python resources/make_icons.py
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication

    from dpsad_workbench.icon import ICON_SIZES, ICON_SVG, render_icon_image

    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])  # noqa: F841 - Qt needs it alive
    (HERE / "dpsad-workbench.svg").write_text(ICON_SVG, encoding="utf-8")
    icons = HERE / "icons"
    icons.mkdir(exist_ok=True)
    for size in ICON_SIZES:
        path = icons / f"dpsad-workbench-{size}.png"
        if not render_icon_image(size).save(str(path)):
            raise OSError(f"cannot write {path}")
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
