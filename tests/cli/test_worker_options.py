"""``--device`` and ``--nproc`` say what they mean in ``--help`` for train, sample, export and evaluate."""

from __future__ import annotations

import pytest

from dpsad_core.cli import build_parser, main


def help_of(command: str) -> str:
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[command]  # argparse keeps them there
    return " ".join(sub.format_help().split())


@pytest.mark.parametrize("command", ["train", "sample", "export", "evaluate"])
def test_device_and_nproc_are_explained(command):
    text = help_of(command)
    assert "--nproc N" in text and "elastic launcher" in text and "torchrun" in text
    assert "auto (a GPU when there is one, else the CPU)" in text and "cuda:LOCAL_RANK" in text


@pytest.mark.parametrize("command", ["sample", "export", "evaluate"])
def test_sampling_commands_promise_the_same_images_for_any_n(command):
    assert "the images are the same for any N" in help_of(command)


@pytest.mark.parametrize("args", [("export", "RUN", "--per-class", "1"), ("sample", "RUN"),
                                  ("evaluate", "RUN", "--test", "demo")])
def test_nproc_below_one_is_a_configuration_error(capsys, args):
    assert main([*args, "--nproc", "0"]) == 2
    assert "--nproc must be at least 1" in capsys.readouterr().err
