"""``dpsad-core verify`` on an attacker's bundle (issue 15, family 1).

Every malformed, ambiguous or oversized bundle is refused with exit 8 and ONE line on stderr that
names the member and the reason; never exit 70, never a MemoryError, never a hang. Sizes are checked
before reading (the zip's central directory, lstat), and reads are capped because headers lie. The
zips are built byte by byte (tests/export/rawzip.py) from a real signed bundle, so the only fault in
each is the one the case adds. A bad ``--public-key`` file is a setting: exit 2, one line.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import zlib
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from dpsad_core.cli import main
from dpsad_core.errors import ConfigError
from dpsad_core.export import signing
from dpsad_core.export.layout import MANIFEST, BundleError
from dpsad_core.export.verify import verify_bundle
from tests.export.rawzip import RawMember, deflated, members_of, write_zip, zeros_bomb

pytestmark = pytest.mark.timeout(60)  # a FIFO or /dev/zero read by mistake would hang: fail instead


def verify_cli(capsys, *args) -> tuple[int, str, str]:
    code = main(["verify", *(str(arg) for arg in args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_refused(capsys, bundle: Path, *fragments: str, code: int = BundleError.exit_code,
                   args: tuple = ()) -> str:
    """Verify exits ``code`` with one line on stderr holding every fragment, and prints nothing else."""
    exit_code, out, err = verify_cli(capsys, bundle, *args)
    assert exit_code == code, err
    assert out == "" and len(err.splitlines()) == 1 and err.startswith("dpsad-core: error: "), err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


def _member(members: list[RawMember], name: str) -> int:
    return next(index for index, member in enumerate(members) if member.name == name)


def _with(members: list[RawMember], name: str, **changes) -> list[RawMember]:
    """``members`` with the one called ``name`` changed."""
    index = _member(members, name)
    return members[:index] + [replace(members[index], **changes)] + members[index + 1:]


def _flipped_crc(member: RawMember) -> RawMember:
    return replace(member, crc=zlib.crc32(member.data) ^ 1)


IMAGE = "bundle/images/0/0-000001.png"

# name: (how the attacker changes the members of an intact bundle zip, the member named, the reason given)
ZIP_CASES = {
    # ambiguous: an extractor may keep another copy than the one verify checked
    "two members named labels.csv, the attacker's first": (
        lambda m: [RawMember("bundle/labels.csv", b"file_name,label\nevil.png,0\n")] + m,
        "'bundle/labels.csv'", "appears twice"),
    "two MANIFESTs with one name": (lambda m: m + [RawMember("bundle/MANIFEST", b"")], "'bundle/MANIFEST'",
                                    "appears twice"),
    "a NUL makes a second labels.csv": (lambda m: m + [RawMember(b"bundle/labels.csv\x00.txt", b"evil")],
                                        "bundle/labels.csv\\x00.txt", "NUL character"),
    "a second bundle in the zip": (lambda m: m + [replace(m[_member(m, "bundle/MANIFEST")], name="other/MANIFEST")],
                                   "MANIFEST", "second MANIFEST"),
    "a file where a folder is": (lambda m: m + [RawMember("bundle/images", b"x")], "'bundle/images'",
                                 "both a file and a folder"),
    # unsafe names: would be written outside the bundle, or are another spelling of a member
    "parent traversal": (lambda m: m + [RawMember("bundle/../../evil.sh", b"x")], "'bundle/../../evil.sh'", "'..'"),
    "traversal from the top": (lambda m: m + [RawMember("../evil.sh", b"x")], "'../evil.sh'", "'..'"),
    "absolute path": (lambda m: m + [RawMember("/tmp/evil.sh", b"x")], "'/tmp/evil.sh'", "absolute"),
    "Windows drive": (lambda m: m + [RawMember("C:/evil.sh", b"x")], "'C:/evil.sh'", "absolute"),
    "backslashes": (lambda m: m + [RawMember("bundle\\..\\evil.sh", b"x")], "evil.sh", "backslash"),
    "a dot segment": (lambda m: m + [RawMember("bundle/./labels.csv", b"x")], "'bundle/./labels.csv'", "'.' part"),
    "an empty name": (lambda m: m + [RawMember("", b"x")], "member ''", "empty name"),
    "a newline in a name": (lambda m: m + [RawMember("bundle/images/0/a\nb.png", b"x")], "a\\nb.png",
                            "control character"),
    # not regular files
    "a symlink member": (lambda m: _with(m, "bundle/labels.csv", data=b"/etc/passwd", mode=stat.S_IFLNK | 0o777),
                         "'bundle/labels.csv'", "symbolic link"),
    "a FIFO member": (lambda m: _with(m, IMAGE, mode=stat.S_IFIFO | 0o644), f"'{IMAGE}'", "a FIFO"),
    # unreadable members
    "the encryption flag": (lambda m: _with(m, "bundle/MANIFEST", flags=0x1), "'bundle/MANIFEST'", "encrypted"),
    "Deflate64": (lambda m: _with(m, "bundle/labels.csv", method=9), "'bundle/labels.csv'", "compression method 9"),
    "a bad CRC in the MANIFEST": (lambda m: [_flipped_crc(x) if x.name == "bundle/MANIFEST" else x for x in m],
                                  "'bundle/MANIFEST'", "CRC"),
    "a bad CRC in an image": (lambda m: [_flipped_crc(x) if x.name == IMAGE else x for x in m], f"'{IMAGE}'", "CRC"),
    "a broken deflate stream": (lambda m: _with(m, "bundle/MANIFEST", method=8, data=b"\xff" * 64, size=4096),
                                "'bundle/MANIFEST'", "cannot be read"),
    "a truncated deflate stream": (
        lambda m: [replace(deflated(x.name, x.data), data=deflated(x.name, x.data).data[:20])
                   if x.name == IMAGE else x for x in m], f"'{IMAGE}'", "cannot be read"),
    # bombs: declared sizes are refused before reading; a header that understates one is caught by the cap
    "a 3 MB zip whose MANIFEST inflates to 3 GiB": (lambda m: _with(m, "bundle/MANIFEST", **_bomb(3)),
                                                    "'bundle/MANIFEST'", "3,221,225,472 bytes", "a MANIFEST may have"),
    "a MANIFEST bomb whose header says 4 KiB": (lambda m: _with(m, "bundle/MANIFEST", **_bomb(1, size=4096)),
                                                "'bundle/MANIFEST'", "cannot be read", "CRC"),
    "an image declared 20 GiB": (lambda m: _with(m, IMAGE, **_bomb(1, size=20 << 30)), f"'{IMAGE}'",
                                 "21,474,836,480 bytes", "DPSAD_BUNDLE_MAX_MEMBER_BYTES"),
    "a 1 GiB signature": (lambda m: _with(m, "bundle/MANIFEST.sig", **_bomb(1)), "'bundle/MANIFEST.sig'",
                          "a signature may have"),
    "a 1 GiB embedded public key": (lambda m: _with(m, "bundle/signer-public-key.pem", **_bomb(1)),
                                    "'bundle/signer-public-key.pem'", "a public key may have"),
    "a 1 GiB privacy report": (lambda m: _with(m, "bundle/privacy-report.json", **_bomb(1)),
                               "'bundle/privacy-report.json'", "a privacy report may have"),
}


def _bomb(gigabytes: int, size: int | None = None) -> dict:
    bomb = zeros_bomb("unused", gigabytes, size=size)
    return {"data": bomb.data, "method": bomb.method, "crc": bomb.crc, "size": bomb.size}


@pytest.fixture
def bundle_members(sealed_bundle) -> list[RawMember]:
    return members_of(sealed_bundle)


def test_the_byte_built_zip_of_an_intact_bundle_verifies(bundle_members, tmp_path, capsys):
    """The baseline every case changes: so each refusal below is for the fault the case added."""
    archive = write_zip(tmp_path / "intact.zip", bundle_members)
    code, out, err = verify_cli(capsys, archive)
    assert code == 0 and out.startswith("OK:"), err
    mixed = [deflated(m.name, m.data) if m.name.endswith((MANIFEST, ".json")) else m for m in bundle_members]
    assert verify_bundle(write_zip(tmp_path / "deflated.zip", mixed)).ok


@pytest.mark.parametrize("case", list(ZIP_CASES))
def test_a_hostile_zip_is_refused_with_one_line_naming_the_member(case, bundle_members, tmp_path, capsys):
    attack, *fragments = ZIP_CASES[case]
    archive = write_zip(tmp_path / "hostile.zip", attack(bundle_members))
    assert_refused(capsys, archive, *fragments)
    with pytest.raises(BundleError):
        verify_bundle(archive)


def test_member_count_is_capped_from_the_central_directory_and_again_after_reading_it(
        bundle_members, tmp_path, capsys, monkeypatch):
    archive = write_zip(tmp_path / "bundle.zip", bundle_members)
    monkeypatch.setenv("DPSAD_BUNDLE_MAX_MEMBERS", "5")
    assert_refused(capsys, archive, f"declares {len(bundle_members)} members", "more than the 5",
                   "DPSAD_BUNDLE_MAX_MEMBERS")
    # An end record that understates the count: the directory zipfile parsed still holds too many.
    data = bytearray(archive.read_bytes())
    data[-14:-10] = (1).to_bytes(2, "little") * 2
    archive.write_bytes(bytes(data))
    assert_refused(capsys, archive, f"holds {len(bundle_members)} members, more than 5")
    monkeypatch.setenv("DPSAD_BUNDLE_MAX_MEMBERS", "1000")
    assert verify_cli(capsys, archive)[0] == 0


def test_every_single_byte_change_to_a_zip_is_verified_or_refused_never_a_crash(bundle_members, tmp_path):
    """Flip each byte of a small bundle zip in turn: each result is OK, a failed check or a BundleError."""
    members = [deflated(m.name, m.data) if m.name.endswith((MANIFEST, ".json", ".png")) else m
               for m in bundle_members]
    intact = write_zip(tmp_path / "intact.zip", members).read_bytes()
    archive = tmp_path / "flipped.zip"
    outcomes = {"ok": 0, "failed": 0, "refused": 0}
    directory = intact.index(b"PK\x01\x02")
    # every byte of the central directory and end record; every 7th of the local headers and data (seconds)
    for offset in [*range(0, directory, 7), *range(directory, len(intact))]:
        data = bytearray(intact)
        data[offset] ^= 0xFF
        archive.write_bytes(bytes(data))
        try:
            result = verify_bundle(archive)
        except BundleError as error:
            assert "\n" not in str(error)
            outcomes["refused"] += 1
        else:
            assert all("\n" not in problem for problem in result.problems)
            outcomes["ok" if result.ok else "failed"] += 1
    assert outcomes["refused"] and outcomes["failed"], outcomes


# -- a folder bundle ---------------------------------------------------------------------------------
def _outside_file(bundle: Path) -> Path:
    secret = bundle.parent / "outside-secret.txt"
    secret.write_text("a file that is not part of the bundle\n")
    return secret


def _replace_by_link(bundle: Path, relative: str) -> None:
    target = bundle / relative
    outside = bundle.parent / ("outside-" + target.name)
    shutil.move(target, outside)
    target.symlink_to(outside, target_is_directory=outside.is_dir())


FOLDER_CASES = {
    "an added link to a file outside": (lambda b: (b / "link.png").symlink_to(_outside_file(b)), "'link.png'",
                                        "symbolic link"),
    "a listed image replaced by a link": (lambda b: _replace_by_link(b, "images/0/0-000001.png"),
                                          "'images/0/0-000001.png'", "symbolic link"),
    "a class folder replaced by a link": (lambda b: _replace_by_link(b, "images/1"), "'images/1'",
                                          "symbolic link"),
    "the MANIFEST replaced by a link": (lambda b: _replace_by_link(b, MANIFEST), "'MANIFEST'", "symbolic link"),
    "a FIFO among the images": (lambda b: os.mkfifo(b / "images/0/0-000009.png"), "'images/0/0-000009.png'",
                                "a FIFO"),
    "the MANIFEST replaced by a FIFO": (lambda b: ((b / MANIFEST).unlink(), os.mkfifo(b / MANIFEST)), "'MANIFEST'",
                                        "a FIFO"),
    "a newline in a file name": (lambda b: (b / "images/0/a\nb.png").write_bytes(b"x"), "'images/0/a\\nb.png'",
                                 "control character"),
    "a backslash in a file name": (lambda b: (b / "images/0/..\\..\\evil.png").write_bytes(b"x"), "evil.png",
                                   "backslash"),
}


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links and FIFOs need a POSIX file system")
@pytest.mark.parametrize("case", list(FOLDER_CASES))
def test_a_hostile_folder_is_refused_with_one_line_naming_the_member(case, sealed_bundle, capsys):
    attack, *fragments = FOLDER_CASES[case]
    attack(sealed_bundle)
    assert_refused(capsys, sealed_bundle, *fragments)


LIMIT_CASES = {
    "DPSAD_BUNDLE_MAX_MEMBERS": ("5", "more than 5 members"),
    "DPSAD_BUNDLE_MAX_MEMBER_BYTES": ("70", "more than the 70 a member may have"),
    "DPSAD_BUNDLE_MAX_TOTAL_BYTES": ("300", "past 300 bytes in all"),
    "DPSAD_BUNDLE_MAX_MANIFEST_BYTES": ("64", "more than the 64 a MANIFEST may have"),
}


@pytest.mark.parametrize("variable", list(LIMIT_CASES))
def test_each_limit_refuses_a_folder_over_it_and_names_how_to_raise_it(variable, sealed_bundle, capsys,
                                                                       monkeypatch):
    value, reason = LIMIT_CASES[variable]
    monkeypatch.setenv(variable, value)
    assert_refused(capsys, sealed_bundle, reason, variable, "docs/limits.md")
    monkeypatch.setenv(variable, str(10 ** 9))
    assert verify_cli(capsys, sealed_bundle)[0] == 0


@pytest.mark.parametrize("value", ["lots", "0", "-5", "1.5"])
def test_a_limit_that_is_not_a_positive_whole_number_is_a_configuration_error(value, sealed_bundle, capsys,
                                                                              monkeypatch):
    monkeypatch.setenv("DPSAD_BUNDLE_MAX_MEMBERS", value)
    assert_refused(capsys, sealed_bundle, "DPSAD_BUNDLE_MAX_MEMBERS", code=ConfigError.exit_code)


@pytest.mark.skipif(sys.platform == "win32", reason="FIFOs need a POSIX file system")
def test_a_bundle_path_that_is_a_device_or_a_fifo_is_refused(tmp_path, capsys):
    fifo = tmp_path / "bundle.zip"
    os.mkfifo(fifo)
    assert_refused(capsys, fifo, str(fifo), "a FIFO")
    if Path("/dev/zero").exists():
        assert_refused(capsys, Path("/dev/zero"), "/dev/zero", "a character device")


# -- the key given with --public-key -----------------------------------------------------------------
def _fifo(tmp_path: Path) -> Path:
    os.mkfifo(tmp_path / "key.pem")
    return tmp_path / "key.pem"


def _huge(tmp_path: Path) -> Path:
    path = tmp_path / "key.pem"
    with open(path, "wb") as handle:
        handle.truncate(1 << 30)  # sparse: 1 GiB declared, nothing written
    return path


KEY_CASES = {
    "/dev/zero": (lambda tmp: Path("/dev/zero"), "a character device"),
    "a FIFO": (_fifo, "a FIFO"),
    "a folder": (lambda tmp: tmp, "a folder"),
    "a 1 GiB file": (_huge, "1,073,741,824 bytes"),
    "a missing file": (lambda tmp: tmp / "nothing.pem", "cannot be read"),
}


@pytest.mark.skipif(sys.platform == "win32", reason="FIFOs and devices need a POSIX file system")
@pytest.mark.parametrize("case", list(KEY_CASES))
def test_a_public_key_file_that_is_no_key_file_is_refused_before_reading(case, sealed_bundle, tmp_path, capsys):
    make, reason = KEY_CASES[case]
    key = make(tmp_path)
    if case == "/dev/zero" and not key.exists():
        pytest.skip("no /dev/zero here")
    assert_refused(capsys, sealed_bundle, str(key), reason, code=ConfigError.exit_code, args=("--public-key", key))


def test_a_link_to_the_right_key_is_followed(sealed_bundle, tmp_path, capsys):
    signing.export_public_key(tmp_path / "signer.pem")
    (tmp_path / "link.pem").symlink_to(tmp_path / "signer.pem")
    code, out, err = verify_cli(capsys, sealed_bundle, "--public-key", tmp_path / "link.pem")
    assert code == 0 and "note:" not in out, err


# -- nothing outside the bundle is read, nothing is written --------------------------------------------
_OPENED: list[tuple[str, object]] | None = None
_WRITE_EVENTS = {"os.remove", "os.rename", "os.mkdir", "os.rmdir", "os.symlink", "os.link", "os.chmod",
                 "os.truncate", "os.utime", "shutil.copyfile", "shutil.move", "shutil.rmtree", "os.chown"}


def _audit(event: str, args: tuple) -> None:
    if _OPENED is None:
        return
    if event == "open":
        path, mode, flags = args
        _OPENED.append(("open", (os.fsdecode(path) if isinstance(path, (str, bytes)) else path, mode, flags)))
    elif event in ("os.scandir", "os.listdir") or event in _WRITE_EVENTS:
        _OPENED.append((event, args))


@contextmanager
def _recording():
    global _OPENED
    if not getattr(sys, "_dpsad_verify_audit", False):
        sys.addaudithook(_audit)  # cannot be removed: it records only inside this context
        sys._dpsad_verify_audit = True
    _OPENED = []
    try:
        yield _OPENED
    finally:
        _OPENED = None


def _assert_stays_inside(events, bundle: Path, outside: Path) -> None:
    assert events, "the audit hook recorded nothing"
    writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    for event, args in events:
        assert event not in _WRITE_EVENTS, (event, args)
        if event != "open":
            continue
        path, mode, flags = args
        assert not (isinstance(mode, str) and set(mode) & set("wax+")), args
        assert not (isinstance(flags, int) and flags & writes), args
        if isinstance(path, str):
            assert outside.name not in path, args
            # relative names are opened beneath a folder descriptor of the bundle itself
            assert not os.path.isabs(path) or Path(path).resolve().is_relative_to(bundle.resolve()), args


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links need a POSIX file system")
def test_verify_opens_nothing_outside_the_bundle_and_writes_nothing(sealed_bundle, bundle_members, tmp_path):
    outside = _outside_file(sealed_bundle)
    archive = write_zip(tmp_path / "hostile.zip", bundle_members + [
        RawMember("bundle/images/0/link.png", str(outside).encode(), mode=stat.S_IFLNK | 0o777)])
    verify_bundle(sealed_bundle)  # imports done: only the verification itself is recorded below
    with _recording() as events:
        assert verify_bundle(sealed_bundle).ok
    _assert_stays_inside(events, sealed_bundle, outside)
    with _recording() as events:
        with pytest.raises(BundleError):
            verify_bundle(archive)
    _assert_stays_inside(events, archive, outside)
    (sealed_bundle / "images/0/0-000001.png").unlink()
    (sealed_bundle / "images/0/0-000001.png").symlink_to(outside)
    with _recording() as events:
        with pytest.raises(BundleError):
            verify_bundle(sealed_bundle)
    _assert_stays_inside(events, sealed_bundle, outside)


def test_a_manifest_listing_more_files_than_a_bundle_may_hold_fails_before_it_is_parsed_whole(
        sealed_bundle, capsys, monkeypatch):
    members = sum(1 for _ in sealed_bundle.rglob("*"))
    monkeypatch.setenv("DPSAD_BUNDLE_MAX_MEMBERS", str(members))
    assert verify_cli(capsys, sealed_bundle)[0] == 0
    with open(sealed_bundle / MANIFEST, "a") as handle:
        handle.writelines(f"{index:064x}  images/0/{index}.png\n" for index in range(members))
    code, out, err = verify_cli(capsys, sealed_bundle)
    assert code == BundleError.exit_code and len(err.splitlines()) == 1
    assert f"MANIFEST lists more than {members} files" in err and "DPSAD_BUNDLE_MAX_MEMBERS" in err


def test_a_member_that_grows_past_its_declared_size_while_read_is_cut_off(sealed_bundle):
    """The hard cap behind every read: bytes beyond the size the listing (or a zip header) declared."""
    from dpsad_core.export.members import BundleLimits, open_bundle

    with open_bundle(sealed_bundle, BundleLimits()) as reader:
        declared = reader.sizes["labels.csv"]
        with open(sealed_bundle / "labels.csv", "ab") as handle:
            handle.write(b"images/9/9-000009.png,9,9\n")
        with pytest.raises(BundleError, match=rf"'labels.csv' holds more than the {declared} bytes declared"):
            reader.sha256("labels.csv")


def test_a_hostile_zip_is_refused_on_a_machine_without_torch_or_numpy(bundle_members, tmp_path):
    archive = write_zip(tmp_path / "hostile.zip", [RawMember("bundle/labels.csv", b"evil")] + bundle_members)
    code = ("import sys\n"
            "for name in ('torch', 'numpy', 'PIL', 'opacus', 'scipy'):\n"
            "    sys.modules[name] = None  # any import of these now raises ImportError\n"
            "from dpsad_core.commands.export import verify_main\n"
            f"sys.exit(verify_main([{str(archive)!r}]))\n")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == BundleError.exit_code, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and "'bundle/labels.csv' appears twice" in proc.stderr
