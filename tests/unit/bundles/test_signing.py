"""Signed exports with real Ed25519 keys (cryptography): sign, verify, and every way an export
is refused once a public key is configured (argument or CASCADE_BUNDLE_PUBLIC_KEY), through the
same `verify_bundle` that `cascade verify` (the k8s sidecar) and `cascade rollout` use."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cascade import __version__
from cascade.bundles.manifest import MANIFEST_FILE, SIGNATURE_FILE, verify_bundle, write_manifest
from cascade.bundles.signing import (
    PUBLIC_KEY_ENV, generate_keys, load_public_key, sign_manifest, verify_export, verify_if_configured,
    verify_signature,
)
from cascade.errors import BundleVerificationError, InvalidInputError, NotFoundError

BUNDLE = "demo-20260101T000000Z-abcdef12"


def _export(root: Path, manifest: bool = True) -> Path:
    """A small export-shaped folder: files in nested folders, as `cascade export` writes them."""
    files = {
        "export.json": json.dumps({"version": BUNDLE, "code_version": __version__, "dataset_name": "demo",
                                   "dataset_hash": "h", "artifacts_key": "k"}),
        "model_repository/ranking/1/model.py": "print('ranking')\n",
        "model_repository/ranking/config.pbtxt": 'backend: "python"\n',
        "artifacts/ranking/dlrm.onnx": "\x00\x01binary",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    if manifest:
        write_manifest(root, BUNDLE, __version__)
    return root


@pytest.fixture()
def keys(tmp_path: Path):
    return generate_keys(tmp_path / "keys")


@pytest.fixture()
def signed(tmp_path: Path, keys) -> Path:
    export = _export(tmp_path / "export")
    sign_manifest(export, keys.private_key)
    return export


@pytest.fixture(autouse=True)
def _no_configured_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PUBLIC_KEY_ENV, raising=False)


def test_signed_export_verifies(signed: Path, keys) -> None:
    assert verify_export(signed, keys.public_key).bundle_id == BUNDLE
    signature = base64.b64decode((signed / SIGNATURE_FILE).read_text())
    load_public_key(keys.public_key).verify(signature, (signed / MANIFEST_FILE).read_bytes())
    assert oct(keys.private_key.stat().st_mode & 0o777) == "0o600"


def test_unsigned_export_is_refused(tmp_path: Path, keys) -> None:
    export = _export(tmp_path / "export")
    verify_bundle(export)  # no key configured: digests only
    with pytest.raises(BundleVerificationError, match="unsigned: manifest.sig is missing"):
        verify_bundle(export, public_key=keys.public_key)


def test_other_key_is_refused(signed: Path, tmp_path: Path) -> None:
    other = generate_keys(tmp_path / "other")
    with pytest.raises(BundleVerificationError, match="does not match manifest.json"):
        verify_signature(signed, other.public_key)


def test_edited_manifest_is_refused(signed: Path, keys) -> None:
    """A re-hashed manifest (an attacker who swapped model.py and rewrote the digests)."""
    (signed / "model_repository/ranking/1/model.py").write_text("import os; os.system('curl evil')\n")
    write_manifest(signed, BUNDLE, __version__)
    verify_bundle(signed)  # digests alone are consistent again...
    with pytest.raises(BundleVerificationError, match="does not match manifest.json"):
        verify_export(signed, keys.public_key)  # ...the signature is not


def test_changed_and_unlisted_files_are_refused(signed: Path, keys) -> None:
    (signed / "model_repository/ranking/1/model.py").write_text("import os\n")
    with pytest.raises(BundleVerificationError, match="model_repository/ranking/1/model.py: sha256 differs"):
        verify_export(signed, keys.public_key)
    (signed / "model_repository/ranking/1/model.py").write_text("print('ranking')\n")
    (signed / "model_repository/backdoor/1").mkdir(parents=True)
    (signed / "model_repository/backdoor/1/model.py").write_text("x = 1\n")
    with pytest.raises(BundleVerificationError, match="backdoor/1/model.py: not listed"):
        verify_export(signed, keys.public_key)


def test_garbage_signature_names_the_file(signed: Path, keys) -> None:
    (signed / SIGNATURE_FILE).write_text("not base64 !!!")
    with pytest.raises(BundleVerificationError, match="manifest.sig: expected a base64 Ed25519 signature"):
        verify_signature(signed, keys.public_key)


def test_bad_keys_name_the_expected_form(tmp_path: Path, signed: Path) -> None:
    bad = tmp_path / "bad.pub"
    bad.write_text(base64.b64encode(b"short").decode())
    with pytest.raises(InvalidInputError, match="expected 32 raw bytes in base64, got 5 bytes"):
        verify_signature(signed, bad)
    with pytest.raises(NotFoundError, match="public key .* does not exist"):
        verify_signature(signed, tmp_path / "absent.pub")
    (tmp_path / "rsa.pem").write_text("-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n")
    with pytest.raises(InvalidInputError, match="not a PEM public key"):
        verify_signature(signed, tmp_path / "rsa.pem")


def test_pem_public_key_is_accepted(signed: Path, keys, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    pem = load_public_key(keys.public_key).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "key.pem").write_bytes(pem)
    verify_export(signed, tmp_path / "key.pem")


def test_configured_key_is_enforced_by_verify_bundle(tmp_path: Path, keys, monkeypatch: pytest.MonkeyPatch) -> None:
    """CASCADE_BUNDLE_PUBLIC_KEY turns the signature on for every loader (rollout, sidecar)."""
    export = _export(tmp_path / "export")
    assert verify_if_configured(export) is None
    monkeypatch.setenv(PUBLIC_KEY_ENV, str(keys.public_key))
    for check in (verify_if_configured, verify_bundle):
        with pytest.raises(BundleVerificationError, match="unsigned"):
            check(export)
    sign_manifest(export, keys.private_key)
    assert verify_if_configured(export).bundle_id == BUNDLE and verify_bundle(export).bundle_id == BUNDLE


def test_generate_refuses_to_overwrite(keys) -> None:
    with pytest.raises(InvalidInputError, match="exists already"):
        generate_keys(keys.private_key.parent)


def test_cli_keys_sign_verify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cascade.cli import app

    runner = CliRunner()
    export = _export(tmp_path / "export", manifest=False)
    result = runner.invoke(app, ["keys", "generate", "--out", str(tmp_path / "k")])
    assert result.exit_code == 0, result.output
    key, pub = tmp_path / "k/bundle-signing.key", tmp_path / "k/bundle-signing.pub"
    result = runner.invoke(app, ["sign", str(export), "--key", str(key)])
    assert result.exit_code == 2 and "manifest.json" in result.output
    result = runner.invoke(app, ["sign", str(export), "--key", str(key), "--write-manifest"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["verify", str(export), "--public-key", str(pub)])
    assert result.exit_code == 0 and "verified" in result.output, result.output
    (export / SIGNATURE_FILE).unlink()
    monkeypatch.setenv(PUBLIC_KEY_ENV, str(pub))
    result = runner.invoke(app, ["verify", str(export)])  # what the sidecar runs
    assert result.exit_code != 0 and "unsigned" in result.output, result.output
