"""Publishing bundles (cascade/bundles/publish.py) and the release quality gate.

`file://` runs for real. The `s3://` path runs boto3 against moto in server mode, a local
S3-compatible EMULATOR started as a separate process on a free port (S3 itself cannot be reached
here; fixture ``moto_s3`` in tests/conftest.py): real HTTP, real boto3, the emulator's S3 semantics."""

from __future__ import annotations

from pathlib import Path

import pytest

from cascade import __version__
from cascade.bundles.manifest import write_manifest
from cascade.bundles.publish import FileStore, open_store, publish
from cascade.bundles.release import quality_gate
from cascade.errors import BundleVerificationError, InvalidInputError

TOLERANCES = {"ndcg@10": 0.02, "recall@100": 0.02}


def make_bundle(root: Path, bundle_id: str) -> Path:
    for rel, text in {"export.json": "{}", "model_repository/recommend/config.pbtxt": 'name: "recommend"',
                      "artifacts/index/item_ids.npy": bundle_id, "feature_repo/data/registry.db": "r"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    write_manifest(root, bundle_id, __version__)
    return root


def evaluation(ndcg: float, recall: float) -> dict:
    return {"metrics": {"ndcg@10": ndcg, "recall@100": recall}}


def test_file_publish_writes_the_bundle_then_the_pointer(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'models'}"
    assert publish(make_bundle(tmp_path / "a", "b-1"), url, evaluation(0.3, 0.6)) == "b-1"
    store = open_store(url)
    assert store.latest() == "b-1" and store.evaluation("b-1") == evaluation(0.3, 0.6)
    published = tmp_path / "models" / "b-1"
    assert (published / "manifest.json").read_bytes() == (tmp_path / "a" / "manifest.json").read_bytes()
    assert (published / "artifacts/index/item_ids.npy").read_text() == "b-1"
    assert not list((tmp_path / "models").rglob(".*.tmp-*"))


def test_a_failed_publish_leaves_the_pointer_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"file://{tmp_path / 'models'}"
    publish(make_bundle(tmp_path / "a", "b-1"), url)
    calls = []

    def flaky(self: FileStore, key: str, path: Path) -> None:
        calls.append(key)
        if len(calls) == 3:
            raise OSError("disk full")
        FileStore._write(self, key, lambda tmp: tmp.write_bytes(Path(path).read_bytes()))

    monkeypatch.setattr(FileStore, "put_file", flaky)
    with pytest.raises(OSError, match="disk full"):
        publish(make_bundle(tmp_path / "b", "b-2"), url)
    assert open_store(url).latest() == "b-1"


def test_a_bundle_that_fails_verification_is_not_published(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "a", "b-1")
    (bundle / "artifacts/index/item_ids.npy").write_text("changed")
    with pytest.raises(BundleVerificationError, match="sha256 differs"):
        publish(bundle, f"file://{tmp_path / 'models'}")
    assert not (tmp_path / "models").exists()


@pytest.mark.parametrize("url", ["http://x/y", "s3://", "file://host/dir", "models"])
def test_store_urls_are_checked(url: str) -> None:
    with pytest.raises(InvalidInputError, match="expected"):
        open_store(url)


def test_s3_publish_against_the_emulator(tmp_path: Path, moto_s3: str) -> None:
    import boto3

    url = "s3://models/exports"
    assert open_store(url).latest() is None
    publish(make_bundle(tmp_path / "a", "b-1"), url, evaluation(0.3, 0.6))
    client = boto3.client("s3", endpoint_url=moto_s3)
    keys = {o["Key"] for o in client.list_objects_v2(Bucket="models", Prefix="exports/")["Contents"]}
    assert {"exports/LATEST", "exports/b-1/manifest.json", "exports/b-1/evaluation.json",
            "exports/b-1/artifacts/index/item_ids.npy"} <= keys
    store = open_store(url)
    assert store.latest() == "b-1" and store.evaluation("b-1")["metrics"]["ndcg@10"] == 0.3
    gate = quality_gate(evaluation(0.25, 0.61), url, TOLERANCES)  # the champion read from S3
    assert not gate.passed and gate.champion == "b-1" and "ndcg@10 0.2500 vs champion 0.3000" in gate.reason


def test_quality_gate_reports_deltas_and_honours_tolerances(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'models'}"
    first = quality_gate(evaluation(0.3, 0.6), url, TOLERANCES)
    assert first.passed and "first release" in first.reason
    publish(make_bundle(tmp_path / "a", "b-1"), url, evaluation(0.30, 0.60))
    within = quality_gate(evaluation(0.295, 0.61), url, TOLERANCES)  # -1.7% ndcg: inside 2%
    assert within.passed and round(within.deltas["ndcg@10"]["rel"], 4) == -0.0167
    assert within.deltas["recall@100"]["abs"] == pytest.approx(0.01)
    worse = quality_gate(evaluation(0.28, 0.60), url, TOLERANCES)
    assert not worse.passed and "ndcg@10" in worse.reason and "recall@100" not in worse.reason
    assert quality_gate(evaluation(0.28, 0.60), url, {"ndcg@10": 0.1, "recall@100": 0.02}).passed
