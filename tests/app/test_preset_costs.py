"""New run: each preset's name says what it costs at this data's size once estimated (issue 18, item 3).

The helper process is replaced by a thread that answers with a fixed plan and a fixed measured step
time, so the test is about the screen, not about calibration or timing (those have their own tests).
"""

from __future__ import annotations

import pytest

from tests.app.previews import answer_previews


@pytest.fixture
def screen(window, monkeypatch):
    """The New run screen, its previews answered in a thread (400 quick steps, 4 tiny, of 0.9 s each)."""
    return answer_previews(window, monkeypatch)


def labels(screen) -> dict[str, str]:
    return {screen.preset.itemData(i): screen.preset.itemText(i) for i in range(screen.preset.count())}


def preview(qtbot, screen, preset: str) -> None:
    screen.preset.setCurrentIndex(screen.preset.findData(preset))
    with qtbot.waitSignal(screen.estimate_ready, timeout=10_000):
        screen.update_preview()


def test_a_preset_is_named_with_its_time_here_once_estimated(screen, qtbot):
    from dpsad_workbench.screens.new_run import PRESETS

    screen.select_data("demo")
    assert labels(screen) == PRESETS  # nothing estimated yet: no time is claimed
    assert not any("min" in label or "second" in label for label in PRESETS.values())
    preview(qtbot, screen, "quick")
    assert labels(screen) == dict(PRESETS, quick="quick - about 6 min 00 s here")  # 400 steps of 0.9 s
    assert screen.preset.currentText() == "quick - about 6 min 00 s here"
    preview(qtbot, screen, "tiny")
    assert labels(screen) == dict(PRESETS, quick="quick - about 6 min 00 s here", tiny="tiny - about 4 s here")
    # The plan says what each part will take.
    assert "<th>time</th>" in screen.plan_text.text() and "about 4 s</td>" in screen.plan_text.text()

    # Other data (or fewer steps) is another cost: the names are neutral again until it is estimated...
    screen.max_steps.setValue(100)
    screen.update_preview()
    assert labels(screen) == PRESETS
    with qtbot.waitSignal(screen.estimate_ready, timeout=10_000):
        pass
    assert labels(screen)["tiny"] == "tiny - about 4 s here" and labels(screen)["quick"] == PRESETS["quick"]
    # ... and coming back shows what was estimated for it.
    screen.max_steps.setValue(0)
    screen.update_preview()
    assert labels(screen)["quick"] == "quick - about 6 min 00 s here"
    with qtbot.waitSignal(screen.estimate_ready, timeout=10_000):
        pass
