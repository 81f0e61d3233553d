"""``dpsad-core export``, ``verify`` and ``keys`` as a user runs them: exit codes and messages."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from dpsad_core.cli import main
from dpsad_core.errors import NotPrivateError
from dpsad_core.export import signing
from dpsad_core.export.layout import PUBLIC_KEY, REPORT_JSON, SIGNATURE, BundleError
from tests.export.conftest import workspace_of

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def cli_bundle(private_run, tmp_path_factory) -> tuple[Path, Path]:
    """A bundle exported through the CLI, and the public key file of the key that signed it."""
    config = tmp_path_factory.mktemp("signer")
    out = tmp_path_factory.mktemp("out") / "bundle"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DPSAD_CONFIG_DIR", str(config))
        code = main(["export", private_run.name, "--per-class", "2", "--out", str(out), "--workspace",
                     str(workspace_of(private_run)), "--device", "cpu", "--json"])
        assert code == 0
        public = out.parent / "signer.pem"
        assert main(["keys", "--export-public", str(public)]) == 0
    return out, public


def test_export_json_and_verify_summary(cli_bundle, private_run, capsys):
    bundle, public = cli_bundle
    code, out, err = cli(capsys, "verify", bundle)
    result = json.loads((private_run / "result.json").read_text())
    assert code == 0, err
    assert out.startswith("OK:") and f"{result['epsilon']:.4g}" in out and "dpsad" in out
    assert "only as trusted as this fingerprint" in out
    fingerprint = signing.fingerprint(signing.public_key_from_bytes(public.read_bytes(), source="pem"))
    assert fingerprint in out
    code, out, _ = cli(capsys, "verify", bundle, "--public-key", public, "--json")
    payload = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and payload["ok"] and payload["key_pinned"] and payload["signer"] == fingerprint
    assert payload["summary"]["epsilon"] == pytest.approx(result["epsilon"])


def _flip_image_byte(bundle: Path) -> str:
    image = sorted((bundle / "images").rglob("*.png"))[0]
    data = bytearray(image.read_bytes())
    data[len(data) // 2] ^= 0xFF
    image.write_bytes(bytes(data))
    return f"changed: {image.relative_to(bundle).as_posix()}"


def _edit_report_number(bundle: Path) -> str:
    report = json.loads((bundle / REPORT_JSON).read_text())
    report["guarantee"]["epsilon"] = report["guarantee"]["epsilon"] / 10
    (bundle / REPORT_JSON).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return f"changed: {REPORT_JSON}"


def _add_file(bundle: Path) -> str:
    (bundle / "images" / "0" / "0-999999.png").write_bytes(b"\x89PNG")
    return "added: images/0/0-999999.png"


def _delete_file(bundle: Path) -> str:
    image = sorted((bundle / "images").rglob("*.png"))[-1]
    image.unlink()
    return f"removed: {image.relative_to(bundle).as_posix()}"


def _replace_public_key(bundle: Path) -> str:
    (bundle / PUBLIC_KEY).write_bytes(signing.public_key_pem(ed25519.Ed25519PrivateKey.generate().public_key()))
    return "public key:"


def _truncate_signature(bundle: Path) -> str:
    text = (bundle / SIGNATURE).read_text().strip()
    (bundle / SIGNATURE).write_text(text[: len(text) // 2] + "\n")
    return "signature: MANIFEST.sig is truncated"


@pytest.mark.parametrize("tamper", [_flip_image_byte, _edit_report_number, _add_file, _delete_file,
                                    _replace_public_key, _truncate_signature])
def test_verify_fails_and_names_what_failed(cli_bundle, tmp_path, capsys, tamper):
    bundle = tmp_path / "copy"
    shutil.copytree(cli_bundle[0], bundle)
    expected = tamper(bundle)
    code, out, err = cli(capsys, "verify", bundle)
    assert code == BundleError.exit_code
    assert out.startswith("FAILED:") and expected in out, out
    assert err.startswith("dpsad-core: error:") and len(err.strip().splitlines()) == 1


def test_verify_with_a_wrong_public_key_fails(cli_bundle, tmp_path, capsys):
    other = tmp_path / "other.pem"
    other.write_bytes(signing.public_key_pem(ed25519.Ed25519PrivateKey.generate().public_key()))
    code, out, _ = cli(capsys, "verify", cli_bundle[0], "--public-key", other)
    assert code == BundleError.exit_code and "wrong key: the bundle was signed by" in out


def test_verify_needs_no_torch(cli_bundle):
    code = ("import sys\nsys.modules['torch'] = None\nfrom dpsad_core.cli import main\n"
            f"sys.exit(main(['verify', {str(cli_bundle[0])!r}]))\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("OK:")


def test_non_private_export_exits_with_not_private_code(nonprivate_run, tmp_path, capsys):
    code, _, err = cli(capsys, "export", nonprivate_run.name, "--count", "3", "--out", tmp_path / "b",
                       "--workspace", workspace_of(nonprivate_run), "--device", "cpu")
    assert code == NotPrivateError.exit_code and "--research" in err
    assert not (tmp_path / "b").exists()


def test_keys_show_export_import_never_print_the_private_key(tmp_path, capsys):
    code, out, _ = cli(capsys, "keys", "--json")
    shown = json.loads(out)
    assert code == 0 and shown["fingerprint"].startswith("sha256:")
    pem = signing.key_path().read_bytes()
    body = b"".join(pem.splitlines()[1:-1]).decode()
    assert body not in out and "PRIVATE" not in out
    code, out, _ = cli(capsys, "keys", "--export-public", tmp_path / "pub.pem")
    assert code == 0 and shown["fingerprint"] in out
    assert signing.fingerprint(signing.public_key_from_bytes((tmp_path / "pub.pem").read_bytes(), source="p")) \
        == shown["fingerprint"]
    org = ed25519.Ed25519PrivateKey.generate()
    (tmp_path / "org.pem").write_bytes(org.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    code, out, _ = cli(capsys, "keys", "--import-private", tmp_path / "org.pem")
    assert code == 0 and signing.fingerprint(org.public_key()) in out and "old key kept at" in out
    assert b"".join((tmp_path / "org.pem").read_bytes().splitlines()[1:-1]).decode() not in out
    (tmp_path / "bad.pem").write_text("nope")
    code, _, err = cli(capsys, "keys", "--import-private", tmp_path / "bad.pem")
    assert code == 2 and "bad.pem" in err and len(err.strip().splitlines()) == 1
