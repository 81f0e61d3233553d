"""The application icon, kept as SVG text so the app needs no data files to find at run time.

``resources/make_icons.py`` writes this SVG to ``resources/`` and renders the PNG sizes from it.
The picture: a shield (the privacy guarantee) holding a grid of pixels that go from noise to an
image (a diffusion model's samples).
"""

from __future__ import annotations

ICON_SVG = """<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="256" height="256" viewBox="0 0 256 256">
  <defs>
    <linearGradient id="bg" x1="0" y1="0" x2="1" y2="1">
      <stop offset="0" stop-color="#1f6f8b"/>
      <stop offset="1" stop-color="#123d52"/>
    </linearGradient>
  </defs>
  <rect x="8" y="8" width="240" height="240" rx="44" fill="url(#bg)"/>
  <path d="M128 34 L204 62 L204 126 C204 172 172 206 128 224 C84 206 52 172 52 126 L52 62 Z"
        fill="#f4f8fa" stroke="#9fd3e6" stroke-width="6"/>
  <g>
    <rect x="82" y="78" width="26" height="26" rx="3" fill="#7b8d96"/>
    <rect x="115" y="78" width="26" height="26" rx="3" fill="#b8c4ca"/>
    <rect x="148" y="78" width="26" height="26" rx="3" fill="#5d7480"/>
    <rect x="82" y="111" width="26" height="26" rx="3" fill="#c7d1d6"/>
    <rect x="115" y="111" width="26" height="26" rx="3" fill="#2b8fb3"/>
    <rect x="148" y="111" width="26" height="26" rx="3" fill="#1f6f8b"/>
    <rect x="82" y="144" width="26" height="26" rx="3" fill="#2b8fb3"/>
    <rect x="115" y="144" width="26" height="26" rx="3" fill="#123d52"/>
    <rect x="148" y="144" width="26" height="26" rx="3" fill="#1f6f8b"/>
  </g>
  <circle cx="128" cy="194" r="9" fill="#e0803a"/>
</svg>
"""

ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def render_icon_image(size: int):
    """The icon as a ``size`` x ``size`` QImage (needs a QGuiApplication)."""
    from PySide6.QtCore import QByteArray, Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(QByteArray(ICON_SVG.encode("utf-8")))
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    return image


def app_icon():
    """The icon with every size rendered, for windows, the task bar and dialogs."""
    from PySide6.QtGui import QIcon, QPixmap

    icon = QIcon()
    for size in ICON_SIZES:
        icon.addPixmap(QPixmap.fromImage(render_icon_image(size)))
    return icon
