"""The bundle manifest (cascade/bundles/manifest.py) on a small real folder: what it lists, what
verification catches (a changed, missing or extra file; an incompatible code version), and what
it deliberately leaves to the deployment (mutable state)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cascade import __version__
from cascade.bundles.manifest import (
    MANIFEST_FILE, check_code_compatible, load_manifest, verify_bundle, write_manifest,
)
from cascade.errors import BundleVerificationError


@pytest.fixture
def export(tmp_path: Path) -> Path:
    root = tmp_path / "export"
    for rel, text in {
        "export.json": "{}",
        "model_repository/ranking/config.pbtxt": 'name: "ranking"',
        "model_repository/ranking/1/model.py": "print('hi')",
        "model_repository/ranking/1/__pycache__/model.cpython-311.pyc": "bytecode",
        "artifacts/ranking/dlrm.onnx": "onnx bytes",
        "feature_repo/data/online.db": "sqlite",
        "feature_repo/item_snapshot/LATEST": "v1",
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    write_manifest(root, "tiny-20260101T000000Z-abcdef12", __version__)
    return root


def test_manifest_lists_every_file_sorted_with_sha256(export: Path) -> None:
    text = (export / MANIFEST_FILE).read_text()
    data = json.loads(text)
    assert text == json.dumps(data, sort_keys=True, indent=2) + "\n"
    assert set(data) == {"format_version", "bundle_id", "code_version", "created_at", "files"}
    assert list(data["files"]) == sorted(data["files"])
    assert "artifacts/ranking/dlrm.onnx" in data["files"] and "feature_repo/data/online.db" in data["files"]
    assert not any("__pycache__" in rel or rel == MANIFEST_FILE for rel in data["files"])
    assert all(len(h) == 64 for h in data["files"].values())
    assert verify_bundle(export).bundle_id == "tiny-20260101T000000Z-abcdef12"


def test_a_corrupted_file_fails_verification_naming_it(export: Path) -> None:
    (export / "artifacts/ranking/dlrm.onnx").write_text("truncated")
    with pytest.raises(BundleVerificationError, match=r"artifacts/ranking/dlrm.onnx: sha256 differs"):
        verify_bundle(export)


def test_a_partial_download_fails_verification(export: Path) -> None:
    (export / "model_repository/ranking/1/model.py").unlink()
    with pytest.raises(BundleVerificationError, match=r"model_repository/ranking/1/model.py: missing"):
        verify_bundle(export)


def test_an_unlisted_file_fails_but_mutable_state_may_change(export: Path) -> None:
    (export / "feature_repo/data/online.db").write_text("pushed rows")
    (export / "feature_repo/item_snapshot/v2").mkdir()
    (export / "feature_repo/item_snapshot/v2/items.parquet").write_text("new snapshot")
    (export / "evaluation.json").write_text('{"metrics": {}}')  # published beside it by `cascade release`
    verify_bundle(export)
    (export / "model_repository/ranking/1/extra.py").write_text("import os")
    with pytest.raises(BundleVerificationError, match=r"extra.py: not listed"):
        verify_bundle(export)


def test_missing_or_malformed_manifest(tmp_path: Path, export: Path) -> None:
    with pytest.raises(BundleVerificationError, match=r"manifest.json is missing"):
        load_manifest(tmp_path)
    (export / MANIFEST_FILE).write_text('{"format_version": 1}')
    with pytest.raises(BundleVerificationError, match=r"not a valid bundle manifest"):
        load_manifest(export)


def test_code_version_must_match_major_minor(export: Path) -> None:
    manifest = load_manifest(export)
    check_code_compatible(manifest, installed=manifest.code_version)
    major, minor = manifest.code_version.split(".")[:2]
    check_code_compatible(manifest, installed=f"{major}.{minor}.99")
    with pytest.raises(BundleVerificationError, match=r"exported by cascade .*re-export"):
        check_code_compatible(manifest, installed=f"{major}.{int(minor) + 1}.0")
    with pytest.raises(BundleVerificationError, match=r"code_version 'dev': expected MAJOR.MINOR"):
        check_code_compatible(manifest.model_copy(update={"code_version": "dev"}))
