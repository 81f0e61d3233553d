"""Packaging: every package is installed, the app is not a bare `app` package, icon and desktop entry."""

from __future__ import annotations

import configparser
import json
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_is_listed_and_app_is_renamed():
    config = pyproject()["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "dpsad_core").rglob("__init__.py")}
    found |= {"dpsad_workbench." + ".".join(p.parent.relative_to(ROOT / "app").parts)
              for p in (ROOT / "app").rglob("__init__.py") if p.parent != ROOT / "app"} | {"dpsad_workbench"}
    missing = sorted(found - listed)
    assert not missing, f"add these packages to [tool.setuptools] packages in pyproject.toml: {missing}"
    assert "app" not in listed and config["package-dir"] == {"dpsad_workbench": "app"}


def test_gui_script_and_extras():
    project = pyproject()["project"]
    assert project["gui-scripts"] == {"dpsad-workbench": "dpsad_workbench.main:main"}
    assert "PySide6-Essentials==6.11.3" in project["optional-dependencies"]["gui"]
    assert "pyqtgraph==0.14.0" in project["optional-dependencies"]["gui"]
    test_extra = " ".join(project["optional-dependencies"]["test"])
    assert "pytest-qt" in test_extra and "dpsad-workbench[gui]" in test_extra
    from dpsad_workbench.main import main

    assert callable(main)


def test_desktop_entry_points_at_the_script_and_the_icon():
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str
    entry.read(ROOT / "packaging" / "dpsad-workbench.desktop")
    desktop = entry["Desktop Entry"]
    assert desktop["Type"] == "Application" and desktop["Exec"].split()[0] == "dpsad-workbench"
    assert (ROOT / "resources" / f"{desktop['Icon']}.svg").is_file()
    assert desktop["Terminal"] == "false"


def test_icon_files_match_the_svg_in_the_app():
    from PIL import Image

    from dpsad_workbench.icon import ICON_SIZES, ICON_SVG

    assert (ROOT / "resources" / "dpsad-workbench.svg").read_text() == ICON_SVG
    for size in ICON_SIZES:
        with Image.open(ROOT / "resources" / "icons" / f"dpsad-workbench-{size}.png") as image:
            assert image.size == (size, size)


def test_every_screen_fits_a_2560x1600_display_at_200_percent(workspace):
    code = ("import json\n"
            "from PySide6.QtWidgets import QApplication\n"
            "app = QApplication([])\n"
            "from dpsad_workbench.main import create_window\n"
            "from dpsad_workbench.window import SCREENS\n"
            "window = create_window(); window.show()\n"
            "sizes = {}\n"
            "for key in SCREENS:\n"
            "    window.show_screen(key); app.processEvents()\n"
            "    hint = window.minimumSizeHint()\n"
            "    sizes[key] = [hint.width(), hint.height(), window.devicePixelRatioF()]\n"
            "print(json.dumps(sizes))\n"
            "window.close()\n")
    env = dict(__import__("os").environ, QT_SCALE_FACTOR="2")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True,
                         env=env)
    sizes = json.loads(out.stdout.strip().splitlines()[-1])
    for key, (width, height, ratio) in sizes.items():
        assert ratio == 2.0
        # Logical pixels times the scale must fit the display.
        assert width * ratio <= 2560 and height * ratio <= 1600, f"{key} needs {width}x{height} logical pixels"
