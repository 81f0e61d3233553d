"""Small widgets shared by the screens."""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox, QLabel, QLineEdit, QSizePolicy


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

    def setText(self, text: str) -> None:
        super().setText(text)
        self._fit()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        width = self.width() if self.width() > 50 else 400
        needed = self.heightForWidth(width)
        if needed > 0 and needed != self.minimumHeight():
            self.setMinimumHeight(needed)


class LongValue(QLineEdit):
    """A long value without spaces (a fingerprint, a path) shown on one line that scrolls, not widens the form.

    Read-only, frameless and selectable like a label; it shows the value's start.
    """

    def __init__(self, text: str = "", parent=None) -> None:
        super().__init__(parent)
        self.setReadOnly(True)
        self.setFrame(False)
        self.setStyleSheet("QLineEdit { background: transparent; }")
        self.setText(text)

    def setText(self, text: str | None, /) -> None:
        super().setText(text)
        self.setCursorPosition(0)
        self.setToolTip(text or "")


def compact_combo(combo: QComboBox, characters: int = 16) -> QComboBox:
    """Let ``combo`` be narrower than its longest entry, which its drop-down list still shows in full.

    A combo box is as wide as its longest entry by default: one long dataset or public-data name made
    the whole form, and the window, wider than a laptop's half screen.
    """
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(characters)

    def fit_list(*args) -> None:  # model signals pass rows and columns
        view = combo.view()
        view.setMinimumWidth(view.sizeHintForColumn(0) + view.verticalScrollBar().sizeHint().width() + 8)

    model = combo.model()
    for signal in (model.rowsInserted, model.rowsRemoved, model.modelReset, model.dataChanged):
        signal.connect(fit_list)
    return combo


EPSILON_MIN, EPSILON_MAX, EPSILON_DIGITS = 0.01, 100.0, 3  # the range and precision a privacy officer uses


def parse_epsilon(text: str) -> tuple[float | None, str | None]:
    """``(epsilon, None)`` for a valid entry, else ``(None, the problem in one line)``."""
    from decimal import Decimal, InvalidOperation

    text = text.strip()
    if not text:
        return None, "type a target epsilon, e.g. 8"
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None, f"epsilon {text!r} is not a number: type one such as 8 or 0.5"
    if not number.is_finite() or not Decimal(str(EPSILON_MIN)) <= number <= Decimal(str(EPSILON_MAX)):
        return None, f"epsilon {text} is outside {EPSILON_MIN:g} to {EPSILON_MAX:g}: choose a value in that range"
    if len(number.normalize().as_tuple().digits) > EPSILON_DIGITS:
        return None, (f"epsilon {text} has more than three significant digits: "
                      f"use e.g. {float(f'{float(number):.{EPSILON_DIGITS}g}'):g}")
    return float(number), None


class EpsilonEdit(QLineEdit):
    """A target-epsilon entry: 0.01 to 100, three significant digits, never silently changed.

    A value outside that is kept as typed; ``problem()`` says what is wrong (the screen shows it
    inline) and ``value()`` raises :class:`~dpsad_core.errors.ConfigError` with the same words.
    """

    def __init__(self, value: float = 10.0, parent=None) -> None:
        super().__init__(parent)
        self.setValue(value)

    def setValue(self, value: float) -> None:
        self.setText(f"{value:.{EPSILON_DIGITS}g}")

    def problem(self) -> str | None:
        return parse_epsilon(self.text())[1]

    def value(self) -> float:
        epsilon, problem = parse_epsilon(self.text())
        if problem is not None:
            from dpsad_core.errors import ConfigError

            raise ConfigError(problem, field="epsilon", value=self.text(),
                              remedy=f"type a target epsilon from {EPSILON_MIN:g} to {EPSILON_MAX:g}")
        assert epsilon is not None  # parse_epsilon gives a number whenever it finds no problem
        return epsilon
