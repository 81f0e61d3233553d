"""Small widgets shared by the screens."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QSizePolicy


class WrapLabel(QLabel):
    """A word-wrapping label that always gets the height its text needs.

    A plain wrapped QLabel inside a group box is often given the height of one line when its text
    changes after the layout ran, which clips the rest (seen in the screenshots); this one asks for
    its height-for-width whenever its width or text changes.
    """

    def __init__(self, text: str = "", parent=None) -> None:
        super().__init__(text, parent)
        self.setWordWrap(True)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt API
        super().setText(text)
        self._fit()

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        width = self.width() if self.width() > 50 else 400
        needed = self.heightForWidth(width)
        if needed > 0 and needed != self.minimumHeight():
            self.setMinimumHeight(needed)
