"""Every refusal has its class, exit code and remedy; exit 70 is for our own bugs (issue 15, family 4).

File-system faults are simulated in-process (tests run as root, where chmod does not block writes):
``os.mkdir`` or ``os.fsync`` raise the OSError the kernel would. The command-line checks run the real
parser: nothing is sampled or trained.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

import pytest

import dpsad_core.atomic
from dpsad_core import errors
from dpsad_core.cli import main
from dpsad_core.errors import EXIT_CODES, EXIT_INTERNAL, DpsadError, StorageError, classify, storage_error
from dpsad_core.export.layout import BundleError  # noqa: F401 - registers its exit code among the subclasses
from dpsad_core.privacy.ledger import PrivacyLedger

README = Path(__file__).resolve().parents[2] / "README.md"


def run(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err  # one line, never a traceback
    return code, err


# -- the table -------------------------------------------------------------------------------------------
def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_every_error_class_has_its_code_in_the_one_table():
    for cls in (DpsadError, *_subclasses(DpsadError)):
        assert cls.exit_code in EXIT_CODES, cls
    assert StorageError.exit_code == 9 and EXIT_CODES[EXIT_INTERNAL].endswith("please report it)")


def test_the_readme_lists_every_exit_code():
    text = README.read_text(encoding="utf-8")
    for code in EXIT_CODES:
        if code not in (0, 1):
            assert f"{code} " in text, code


# -- numbers refused as the command line is read -------------------------------------------------------
@pytest.mark.parametrize("args", [
    ("train", "--data", "demo", "--seed", "99999999999999999999"),
    ("train", "--data", "demo", "--seed", "-1"),
    ("sample", "RUN", "--seed", "99999999999999999999"),
    ("export", "RUN", "--per-class", "1", "--seed", "18446744073709551616"),
    ("evaluate", "RUN", "--test", "demo", "--seed", "1e3"),
    ("audit", "--data", "demo", "--train-seed", "99999999999999999999"),
    ("rdm", "generate", "--model", "m", "--index", "i", "--epsilon", "1", "--seed", "99999999999999999999"),
])
def test_a_seed_outside_0_to_2_63_is_a_configuration_error(capsys, args):
    code, err = run(capsys, *args)
    assert code == 2 and "seed" in err and "2**63" in err


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1", "1e6"])
@pytest.mark.parametrize("command", [("export", "RUN", "--per-class", "1"), ("sample", "RUN"),
                                     ("evaluate", "RUN", "--test", "demo")])
def test_a_guidance_that_is_not_a_finite_sane_weight_is_refused(capsys, command, value):
    code, err = run(capsys, *command, f"--guidance={value}")
    assert code == 2 and "--guidance must be" in err and "typically 1 to 5" in err


@pytest.mark.parametrize(("args", "words"), [
    (("export", "RUN", "--per-class", "1000000000"), ("at most 20,000", "got 1000000000", "another --seed")),
    (("export", "RUN", "--count", "1000000000"), ("at most 200,000", "got 1000000000")),
    (("evaluate", "RUN", "--test", "demo", "--per-class", "1000000000"), ("at most 20,000", "got 1000000000")),
    (("sample", "RUN", "--per-class", "1000000"), ("at most 1,000", "got 1000000")),
    (("export", "RUN", "--per-class", "0"), ("at least 1", "got 0")),
    (("export", "RUN", "--per-class", "many"), ("expects a whole number", "'many'")),
])
def test_image_counts_are_capped_with_a_message(capsys, args, words):
    code, err = run(capsys, *args)
    assert code == 2 and all(word in err for word in words), err


@pytest.mark.parametrize(("args", "option"), [
    (("train", "--data", "demo", "--epsilon", "nan"), "--epsilon"),
    (("train", "--data", "demo", "--delta", "1.5"), "--delta"),
    (("rdm", "plan", "--n", "100", "--k", "5", "--q", "inf", "--sigma", "1", "--queries", "3", "--delta", "1e-5"),
     "--q"),
    (("audit", "--data", "demo", "--confidence", "1"), "--confidence"),
])
def test_other_numbers_must_be_finite_and_in_range(capsys, args, option):
    code, err = run(capsys, *args)
    assert code == 2 and f"{option} must be" in err


def test_sample_out_naming_a_folder_is_refused_before_any_work(capsys, tmp_path):
    code, err = run(capsys, "sample", "NO-SUCH-RUN", "--out", str(tmp_path))
    assert code == 2 and f"--out {tmp_path} is a folder" in err and "grid.png" in err  # not "no run": checked first


def test_keys_export_public_to_a_folder_is_refused(capsys, tmp_path):
    code, err = run(capsys, "keys", "--export-public", str(tmp_path))
    assert code == 2 and "is a folder" in err


# -- the file system, classified ----------------------------------------------------------------------------
def _refuse_mkdir_under(monkeypatch, root: Path, code: int) -> None:
    real_mkdir = os.mkdir

    def mkdir(path, *args, **kwargs):
        if Path(path).is_relative_to(root):
            raise OSError(code, os.strerror(code), os.fspath(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)


@pytest.mark.parametrize(("code", "words"), [(errno.EROFS, "read-only file system"),
                                             (errno.EACCES, "permission denied"),
                                             (errno.EPERM, "permission denied")])
def test_a_workspace_that_cannot_be_written_is_a_file_system_error(capsys, monkeypatch, tmp_path, code, words):
    _refuse_mkdir_under(monkeypatch, tmp_path / "mnt", code)
    workspace = tmp_path / "mnt" / "workspace"
    exit_code, err = run(capsys, "datasets", "--workspace", str(workspace))
    assert exit_code == 9 and words in err and str(workspace) in err and "--workspace" in err
    assert "please report" not in err


def test_a_full_disk_names_the_folder_the_free_space_and_the_size_needed(capsys, monkeypatch, tmp_path):
    from dpsad_core.export.signing import load_or_create_signing_key

    load_or_create_signing_key()  # the key exists: the disk fills while the public key is written

    def fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # what a full disk says: no file name

    monkeypatch.setattr(dpsad_core.atomic.os, "fsync", fsync)
    out = tmp_path / "keys" / "signer.pem"
    exit_code, err = run(capsys, "keys", "--export-public", str(out))
    assert exit_code == 9
    assert f"the disk holding {out.parent} is full" in err
    assert " free, " in err and "needed for signer.pem" in err and "free some space" in err
    assert not out.exists() and list(out.parent.iterdir()) == []  # the temporary file is gone too


def test_a_full_disk_without_a_known_size_still_names_the_folder(tmp_path):
    message = str(storage_error(OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "model.pt"))))
    assert message.startswith(f"the disk holding {tmp_path} is full (") and "needed" not in message
    nameless = str(storage_error(OSError(errno.ENOSPC, "No space left on device")))
    assert nameless.startswith("a disk is full") and str(Path.cwd()) not in nameless


def test_a_path_too_long_is_named_and_cut_short(capsys, tmp_path):
    workspace = tmp_path / ("a" * 5000)
    exit_code, err = run(capsys, "datasets", "--workspace", str(workspace))
    assert exit_code == 9 and "too long" in err and "characters)" in err and len(err) < 400


def test_a_folder_where_a_file_belongs_is_classified_wherever_it_happens(tmp_path):
    error = classify(IsADirectoryError(errno.EISDIR, "Is a directory", str(tmp_path)))
    assert isinstance(error, StorageError) and error.exit_code == 9 and "is a folder" in str(error)


def test_the_ledger_on_a_full_or_read_only_disk_is_a_file_system_error(workspace):
    ledger = PrivacyLedger(workspace)
    for code, words in ((sqlite3.SQLITE_FULL, "is full"), (sqlite3.SQLITE_READONLY, "cannot be written")):
        failure = sqlite3.OperationalError("database or disk is full")
        failure.sqlite_errorcode = code
        error = ledger._error(failure, started=0.0)
        assert isinstance(error, StorageError) and words in str(error), code


def test_a_bug_is_still_exit_70_and_asks_for_a_report(capsys, monkeypatch):
    def broken(args):
        raise ZeroDivisionError("division by zero")

    monkeypatch.delenv("DPSAD_DEBUG", raising=False)
    monkeypatch.setattr("dpsad_core.commands.runs._cmd_runs", broken)
    code, err = run(capsys, "runs")
    assert code == EXIT_INTERNAL and "please report it" in err


def test_shown_path_keeps_short_paths_whole():
    assert errors.shown_path("/data/run") == "/data/run"
    assert errors.shown_path("/" + "x" * 500).endswith("(501 characters)")
