"""Settings choose the devices (CPU, one GPU, all GPUs); GPU choices are disabled, with the reason, without CUDA;
the New run plan says where the run trains; "All GPUs" starts one worker per GPU."""

from __future__ import annotations

import pytest

from dpsad_core.errors import ConfigError


def choices(screen) -> dict[str, bool]:
    model = screen.devices.model()
    return {screen.devices.itemData(row): model.item(row).isEnabled() for row in range(screen.devices.count())}


def test_without_cuda_the_gpu_choices_are_disabled_with_the_reason(window, qtbot):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    window.show_screen("settings")
    screen = window.settings_screen
    with qtbot.waitSignal(screen.gpus_checked, timeout=120_000) as blocker:
        screen.check_gpus()
    assert blocker.args[0]["count"] == 0
    assert choices(screen) == {"auto": True, "cpu": True, "gpu": False, "all-gpus": False}
    note = screen.devices_note.text()
    assert note.startswith("No GPU choice:") and blocker.args[0]["reason"] in note and "CPU" in note


def test_all_gpus_is_offered_with_two_or_more_and_saved_as_cuda_on_every_gpu(window):
    from dpsad_workbench.settings import load_settings

    screen = window.settings_screen
    screen.apply_inventory({"count": 1, "names": ["Pretend GPU"], "reason": None})
    assert choices(screen)["gpu"] and not choices(screen)["all-gpus"]
    assert "needs at least two" in screen.devices_note.text()
    screen.apply_inventory({"count": 4, "names": ["Pretend GPU"] * 4, "reason": None})
    assert choices(screen)["all-gpus"] and "All 4 GPUs" in screen.devices.itemText(screen.devices.findData("all-gpus"))
    screen.devices.setCurrentIndex(screen.devices.findData("all-gpus"))
    saved = screen.save()
    assert saved is not None and (saved.device, saved.all_gpus) == ("cuda", True)
    assert (load_settings().device, load_settings().all_gpus) == ("cuda", True)
    assert window.settings.all_gpus is True
    screen.devices.setCurrentIndex(screen.devices.findData("cpu"))
    screen.load()  # back to what is saved
    assert screen.devices.currentData() == "all-gpus"


def test_all_gpus_needs_the_cuda_device():
    from dpsad_workbench.settings import AppSettings

    with pytest.raises(ConfigError, match="all_gpus needs the device cuda"):
        AppSettings(device="cpu", all_gpus=True)
    assert AppSettings(device="cuda", all_gpus=True).device_choice == "all-gpus"
    assert AppSettings().device_choice == "auto"


def test_the_plan_names_the_devices():
    from dpsad_workbench.screens.new_run import render_plan

    result = {"plan": {"phases": [], "planned_epsilon": {"certified": 1.0}, "epsilon_target": 1.0, "delta": 1e-5},
              "dataset": {"name": "demo", "num_records": 10, "num_privacy_units": 10, "unit": "record",
                          "num_classes": 2, "resolution": 8, "channels": 1},
              "steps": {}, "private": True, "estimate": {"seconds": None, "basis": "unknown"}, "budget": None,
              "devices": "all 4 GPUs, one worker each (Pretend GPU)"}
    assert "Trains on: all 4 GPUs, one worker each" in render_plan(result)


def test_devices_summary_and_workers(monkeypatch):
    import torch

    from dpsad_workbench import core

    assert core.devices_summary("cpu").startswith("the CPU")
    assert core.training_workers("cpu", False) == 1 and core.training_workers("cuda", False) == 1
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert core.training_workers("cuda", True) == 4


def test_all_gpus_trains_through_one_worker_per_gpu(monkeypatch, workspace):
    import torch

    from dpsad_core.training import local_workers
    from dpsad_workbench import core

    started = {}

    def fake_train_with_workers(config, *, workspace, nproc, stop, resume=None):
        started.update(nproc=nproc, device=config.device)
        return iter(())

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(local_workers, "train_with_workers", fake_train_with_workers)
    from dpsad_core.training import TrainConfig, resolve_hyperparameters

    config = TrainConfig(data="demo", preset="tiny", hyper=resolve_hyperparameters("tiny"), device="cuda")
    list(core.train_job(stop=lambda: False, config=config, workspace=workspace, all_gpus=True))
    assert started == {"nproc": 4, "device": "cuda"}


@pytest.mark.slow  # the plan is computed in the helper process
def test_the_new_run_plan_shows_where_it_trains(window, qtbot):
    screen = window.new_run
    screen.select_data("demo")
    screen.preset.setCurrentIndex(screen.preset.findData("tiny"))
    with qtbot.waitSignal(screen.plan_ready, timeout=120_000) as blocker:
        screen.update_preview()
    assert blocker.args[0]["devices"].startswith("the CPU")
    assert "Trains on: the CPU" in screen.plan_text.text()
