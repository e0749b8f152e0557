"""Signed exports with real Ed25519 keys (cryptography): sign, verify, and every way an export
must be refused when a public key is configured."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cascade.bundles.manifest import MANIFEST_NAME, SIGNATURE_NAME, read_manifest, write_manifest
from cascade.bundles.signing import (
    PUBLIC_KEY_ENV, generate_keys, load_public_key, sign_manifest, verify_export,
    verify_if_configured, verify_signature,
)
from cascade.errors import BundleVerificationError, InvalidInputError, NotFoundError


def _export(root: Path) -> Path:
    """A small export-shaped folder: files in nested folders, as `cascade export` writes them."""
    files = {
        "export.json": json.dumps({"version": "demo-20260101T000000Z-abcdef12", "code_version": "0.1.0",
                                   "dataset_name": "demo", "dataset_hash": "h", "artifacts_key": "k"}),
        "model_repository/ranking/1/model.py": "print('ranking')\n",
        "model_repository/ranking/config.pbtxt": 'backend: "python"\n',
        "artifacts/ranking/dlrm.onnx": "\x00\x01binary",
        "feature_repo/data/online.db": "sqlite",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    write_manifest(root, "demo-20260101T000000Z-abcdef12", "0.1.0")
    return root


@pytest.fixture()
def keys(tmp_path: Path):
    return generate_keys(tmp_path / "keys")


@pytest.fixture()
def signed(tmp_path: Path, keys) -> Path:
    export = _export(tmp_path / "export")
    sign_manifest(export, keys.private_key)
    return export


def test_manifest_follows_the_contract(tmp_path: Path) -> None:
    export = _export(tmp_path / "export")
    text = (export / MANIFEST_NAME).read_text()
    body = json.loads(text)
    assert text == json.dumps(body, sort_keys=True, indent=2) + "\n"
    assert body["format_version"] == 1 and body["bundle_id"] == "demo-20260101T000000Z-abcdef12"
    assert list(body["files"]) == sorted(body["files"])
    assert set(body["files"]) == {"export.json", "model_repository/ranking/1/model.py",
                                  "model_repository/ranking/config.pbtxt", "artifacts/ranking/dlrm.onnx",
                                  "feature_repo/data/online.db"}
    import hashlib
    assert body["files"]["export.json"] == hashlib.sha256((export / "export.json").read_bytes()).hexdigest()


def test_signed_export_verifies(signed: Path, keys) -> None:
    manifest = verify_export(signed, keys.public_key)
    assert manifest.bundle_id == "demo-20260101T000000Z-abcdef12"
    signature = base64.b64decode((signed / SIGNATURE_NAME).read_text())
    load_public_key(keys.public_key).verify(signature, (signed / MANIFEST_NAME).read_bytes())
    assert oct(keys.private_key.stat().st_mode & 0o777) == "0o600"


def test_unsigned_export_is_refused(tmp_path: Path, keys) -> None:
    export = _export(tmp_path / "export")
    with pytest.raises(BundleVerificationError, match="unsigned: manifest.sig is missing"):
        verify_export(export, keys.public_key)


def test_other_key_is_refused(signed: Path, tmp_path: Path) -> None:
    other = generate_keys(tmp_path / "other")
    with pytest.raises(BundleVerificationError, match="does not match manifest.json"):
        verify_signature(signed, other.public_key)


def test_edited_manifest_is_refused(signed: Path, keys) -> None:
    """One changed byte of manifest.json (e.g. a digest swapped for a malicious model.py)."""
    path = signed / MANIFEST_NAME
    path.write_bytes(path.read_bytes().replace(b'"0.1.0"', b'"0.1.1"'))
    with pytest.raises(BundleVerificationError, match="does not match manifest.json"):
        verify_export(signed, keys.public_key)


def test_modified_added_and_missing_files_are_refused(signed: Path, keys) -> None:
    (signed / "model_repository/ranking/1/model.py").write_text("import os; os.system('curl evil')\n")
    with pytest.raises(BundleVerificationError, match="content differs.*model_repository/ranking/1/model.py"):
        verify_export(signed, keys.public_key)


def test_unlisted_file_is_refused(signed: Path, keys) -> None:
    (signed / "model_repository/backdoor/1").mkdir(parents=True)
    (signed / "model_repository/backdoor/1/model.py").write_text("x = 1\n")
    with pytest.raises(BundleVerificationError, match="not listed in manifest.json: model_repository/backdoor"):
        verify_export(signed, keys.public_key)


def test_missing_file_is_refused_unless_allowed(signed: Path, keys) -> None:
    (signed / "feature_repo/data/online.db").unlink()
    with pytest.raises(BundleVerificationError, match="listed in manifest.json but missing: feature_repo/data/online.db"):
        verify_export(signed, keys.public_key)
    verify_export(signed, keys.public_key, absent_ok=["feature_repo/data/online.db"])


def test_symlink_leaving_the_export_is_refused(signed: Path, tmp_path: Path) -> None:
    (tmp_path / "outside.py").write_text("x = 1\n")
    (signed / "artifacts/link.py").symlink_to(tmp_path / "outside.py")
    with pytest.raises(BundleVerificationError, match="leaves the export"):
        write_manifest(signed, "b", "c")


def test_garbage_signature_and_manifest_name_the_file(signed: Path, keys) -> None:
    (signed / SIGNATURE_NAME).write_text("not base64 !!!")
    with pytest.raises(BundleVerificationError, match="manifest.sig: expected a base64 Ed25519 signature"):
        verify_signature(signed, keys.public_key)
    (signed / MANIFEST_NAME).write_text("{")
    with pytest.raises(BundleVerificationError, match="not valid JSON"):
        read_manifest(signed)


def test_bad_keys_name_the_expected_form(tmp_path: Path, signed: Path) -> None:
    bad = tmp_path / "bad.pub"
    bad.write_text(base64.b64encode(b"short").decode())
    with pytest.raises(InvalidInputError, match="expected 32 raw bytes in base64, got 5 bytes"):
        verify_signature(signed, bad)
    with pytest.raises(NotFoundError, match="public key .* does not exist"):
        verify_signature(signed, tmp_path / "absent.pub")


def test_pem_public_key_is_accepted(signed: Path, keys, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    pem = load_public_key(keys.public_key).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "key.pem").write_bytes(pem)
    verify_export(signed, tmp_path / "key.pem")


def test_verify_if_configured_enforces_only_with_a_key(tmp_path: Path, keys, monkeypatch) -> None:
    export = _export(tmp_path / "export")
    monkeypatch.delenv(PUBLIC_KEY_ENV, raising=False)
    assert verify_if_configured(export) is None
    monkeypatch.setenv(PUBLIC_KEY_ENV, str(keys.public_key))
    with pytest.raises(BundleVerificationError, match="unsigned"):
        verify_if_configured(export)
    sign_manifest(export, keys.private_key)
    assert verify_if_configured(export).bundle_id == "demo-20260101T000000Z-abcdef12"


def test_generate_refuses_to_overwrite(keys) -> None:
    with pytest.raises(InvalidInputError, match="exists already"):
        generate_keys(keys.private_key.parent)


def test_cli_keys_sign_verify(tmp_path: Path) -> None:
    from cascade.cli import app

    runner = CliRunner()
    export = _export(tmp_path / "export")
    (export / MANIFEST_NAME).unlink()
    result = runner.invoke(app, ["keys", "generate", "--out", str(tmp_path / "k")])
    assert result.exit_code == 0, result.output
    key, pub = tmp_path / "k/bundle-signing.key", tmp_path / "k/bundle-signing.pub"
    result = runner.invoke(app, ["sign", str(export), "--key", str(key)])
    assert result.exit_code == 2 and "manifest.json" in result.output
    result = runner.invoke(app, ["sign", str(export), "--key", str(key), "--write-manifest"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["verify", str(export), "--public-key", str(pub)])
    assert result.exit_code == 0 and "signature ok" in result.output, result.output
    (export / "artifacts/ranking/dlrm.onnx").write_bytes(b"tampered")
    result = runner.invoke(app, ["verify", str(export), "--public-key", str(pub)])
    assert result.exit_code == 2 and "artifacts/ranking/dlrm.onnx" in result.output
