"""Item snapshot validation: a corrupt, truncated or half-written snapshot is rejected with a clear
error, and the serving stage keeps its previous snapshot (real Feast materialize on SQLite)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_dataset import ITEM_IDS, write_tiny_dataset  # noqa: E402

from cascade.features.repo import SNAPSHOT_DIR, generate_feature_repo  # noqa: E402
from cascade.features.snapshot import (  # noqa: E402
    ITEMS_FILE,
    LATEST,
    SNAPSHOT_META_FILE as META_FILE,
    InvalidSnapshotError,
    ItemSnapshot,
    latest_version,
)
from cascade.features.store import materialize  # noqa: E402


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("snapval")
    write_tiny_dataset(root / "tiny")
    generate_feature_repo(root / "tiny", root / "repo")
    materialize(root / "repo")
    return root / "tiny", root / "repo"


def _copy_version(repo: Path, tmp_path: Path) -> Path:
    source = repo / SNAPSHOT_DIR / latest_version(repo)
    target = tmp_path / source.name
    shutil.copytree(source, target)
    return target


def test_meta_records_checksum_size_rows_and_schema(published) -> None:
    _, repo = published
    version = repo / SNAPSHOT_DIR / latest_version(repo)
    meta = json.loads((version / META_FILE).read_text())
    assert meta["rows"] == len(ITEM_IDS) and len(meta["sha256"]) == 64
    assert meta["size"] == (version / ITEMS_FILE).stat().st_size
    assert meta["schema"]["item_id"] == "int64"
    assert len(ItemSnapshot.load(version)) == len(ITEM_IDS)


def test_a_flipped_byte_fails_the_checksum(published, tmp_path: Path) -> None:
    version = _copy_version(published[1], tmp_path)
    data = bytearray((version / ITEMS_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (version / ITEMS_FILE).write_bytes(bytes(data))
    with pytest.raises(InvalidSnapshotError, match="sha256 .* does not match"):
        ItemSnapshot.load(version)


def test_a_truncated_file_is_named_as_such(published, tmp_path: Path) -> None:
    version = _copy_version(published[1], tmp_path)
    data = (version / ITEMS_FILE).read_bytes()
    (version / ITEMS_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidSnapshotError, match="truncated or half-written"):
        ItemSnapshot.load(version)


def test_missing_or_broken_meta_is_rejected(published, tmp_path: Path) -> None:
    version = _copy_version(published[1], tmp_path)
    (version / META_FILE).write_text('{"version": "x", "rows": ')
    with pytest.raises(InvalidSnapshotError, match="not valid JSON"):
        ItemSnapshot.load(version)
    (version / META_FILE).unlink()
    with pytest.raises(InvalidSnapshotError, match="half-written"):
        ItemSnapshot.load(version)


def test_rows_and_schema_must_match_the_meta(published, tmp_path: Path) -> None:
    """A consistent checksum is not enough: rows and schema are checked against meta.json too."""
    import hashlib

    version = _copy_version(published[1], tmp_path)
    meta = json.loads((version / META_FILE).read_text())
    table = pq.read_table(version / ITEMS_FILE)
    pq.write_table(table.slice(0, 3), version / ITEMS_FILE)
    meta.update(sha256=hashlib.sha256((version / ITEMS_FILE).read_bytes()).hexdigest(),
                size=(version / ITEMS_FILE).stat().st_size)
    (version / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(InvalidSnapshotError, match=f"has 3 rows, {META_FILE} says {len(ITEM_IDS)}"):
        ItemSnapshot.load(version)
    pq.write_table(table.drop(["category"]), version / ITEMS_FILE)
    meta.update(sha256=hashlib.sha256((version / ITEMS_FILE).read_bytes()).hexdigest(),
                size=(version / ITEMS_FILE).stat().st_size)
    (version / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(InvalidSnapshotError, match="schema differs"):
        ItemSnapshot.load(version)


def test_the_stage_keeps_serving_the_old_snapshot(tmp_path: Path) -> None:
    from cascade.online.stages import ItemFeatureStage
    from cascade.workflows.artifacts import fit_workflow
    from cascade.workflows.synthetic import SyntheticConfig, generate

    data, repo = tmp_path / "data", tmp_path / "repo"
    generate(data, SyntheticConfig(n_users=30, n_items=40, n_interactions=500, n_categories=3, n_brands=4, seed=5),
             name="snap", progress=False)
    generate_feature_repo(data, repo)
    materialize(repo)
    index = tmp_path / "index"
    index.mkdir()
    item_ids = pq.read_table(data / "items.parquet", columns=["item_id"]).column("item_id").to_numpy()
    np.save(index / "item_ids.npy", item_ids.astype(np.int64))
    workflow = fit_workflow(data, tmp_path / "workflow", progress=False)
    rejected: list[tuple[str, str]] = []
    stage = ItemFeatureStage(repo, index, workflow, refresh_seconds=0,
                             on_refresh_failure=lambda version, exc: rejected.append((version, str(exc))))
    good = stage.snapshot_version
    before = stage.gather(np.arange(len(item_ids)))

    bad_version = "99999999T" + good.split("T", 1)[1]  # sorts after: "newer"
    bad = repo / SNAPSHOT_DIR / bad_version
    shutil.copytree(repo / SNAPSHOT_DIR / good, bad)
    (bad / ITEMS_FILE).write_bytes((bad / ITEMS_FILE).read_bytes()[:100])  # half-written
    (repo / SNAPSHOT_DIR / LATEST).write_text(bad_version + "\n")

    assert stage.refresher.check() is None  # what the background thread runs every refresh_seconds
    assert stage.snapshot_version == good and stage.refresher.failures == 1
    assert rejected and rejected[0][0] == bad_version and "truncated or half-written" in rejected[0][1]
    after = stage.gather(np.arange(len(item_ids)))
    np.testing.assert_array_equal(after.item_ids, before.item_ids)
    assert stage.refresher.check() is None and stage.refresher.failures == 1  # not retried every poll
