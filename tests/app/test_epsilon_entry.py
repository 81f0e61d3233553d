"""Target epsilon: the range and precision an officer uses, inline messages, and a warning when noise swamps."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("typed, words", [("0", "outside 0.01 to 100"), ("0.001", "outside 0.01 to 100"),
                                          ("150", "outside 0.01 to 100"), ("1.234", "three significant digits"),
                                          ("ten", "not a number")])
def test_a_bad_epsilon_is_kept_as_typed_and_explained_inline(window, qtbot, typed, words):
    screen = window.new_run
    screen.select_data("demo")
    screen.epsilon.setText(typed)
    assert words in screen.epsilon_problem.text() and not screen.epsilon_problem.isHidden()
    with qtbot.waitSignal(screen.plan_failed, timeout=10_000):
        screen.update_preview()
    assert screen.epsilon.text() == typed  # never silently reset to another value
    assert not screen.start_button.isEnabled() and words in screen.start_reason.text()


@pytest.mark.parametrize("typed, value", [("0.01", 0.01), ("0.0523", 0.0523), ("100", 100.0), ("8", 8.0)])
def test_epsilon_takes_three_significant_digits_from_0_01_to_100(window, typed, value):
    screen = window.new_run
    screen.select_data("demo")
    screen.epsilon.setText(typed)
    assert screen.epsilon_problem.isHidden()
    assert screen.build_config().epsilon == value


def test_the_plan_warns_when_the_noise_swamps_the_signal(workspace):
    from dpsad_core.training import TrainConfig, resolve_hyperparameters
    from dpsad_workbench.core import plan_preview

    def warnings(epsilon):
        config = TrainConfig(data="demo", recipe="dpdm", epsilon=epsilon, preset="quick",
                             hyper=resolve_hyperparameters("quick"))
        return " ".join(plan_preview(config, workspace=workspace)["warnings"])

    assert "mostly noise" in warnings(0.05)  # 1,500 units at epsilon 0.05: sigma about 243 on a batch of 256
    assert "mostly noise" not in warnings(10.0)
