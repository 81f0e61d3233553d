"""numpy images (the core's uint8 grids) to Qt pixmaps, and a label that shows one scaled crisply."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QLabel, QSizePolicy


def array_to_qimage(image: np.ndarray) -> QImage:
    """uint8 ``H x W`` (grey) or ``H x W x 3`` (RGB) to a QImage that owns its pixels."""
    array = np.ascontiguousarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {array.dtype}")
    if array.ndim == 2:
        height, width = array.shape
        qimage = QImage(array.data, width, height, width, QImage.Format.Format_Grayscale8)
    elif array.ndim == 3 and array.shape[2] == 3:
        height, width = array.shape[:2]
        qimage = QImage(array.data, width, height, 3 * width, QImage.Format.Format_RGB888)
    else:
        raise ValueError(f"expected H x W or H x W x 3, got shape {array.shape}")
    return qimage.copy()  # detach from the numpy buffer, which may be freed


class ImageLabel(QLabel):
    """Shows a numpy image scaled to fit, with nearest-neighbour scaling (tiny images stay sharp)."""

    def __init__(self, placeholder: str = "", parent=None) -> None:
        super().__init__(placeholder, parent)
        self._source: QPixmap | None = None
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumSize(160, 160)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setWordWrap(True)

    def set_array(self, image: np.ndarray | None) -> None:
        if image is None:
            self._source = None
            self.setPixmap(QPixmap())
            return
        self._source = QPixmap.fromImage(array_to_qimage(image))
        self._rescale()

    def has_image(self) -> bool:
        return self._source is not None

    def sizeHint(self) -> QSize:
        return QSize(320, 320)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._rescale()

    def _rescale(self) -> None:
        if self._source is None:
            return
        ratio = self.devicePixelRatioF()
        target = self.size() * ratio
        scaled = self._source.scaled(target, Qt.AspectRatioMode.KeepAspectRatio,
                                     Qt.TransformationMode.FastTransformation)
        scaled.setDevicePixelRatio(ratio)
        self.setPixmap(scaled)
