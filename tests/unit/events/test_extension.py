"""Items added after training join the retrieval index through the index extension (real FAISS)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cascade.errors import SchemaError
from cascade.events.extension import ExtensionWatcher, load_extension, publish_extension
from cascade.online.stages import RetrievalStage
from cascade.workflows.index import write_index


@pytest.fixture()
def index_dir(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    write_index(tmp_path / "index", vectors, np.arange(100, 150, dtype=np.int64), np.arange(50, dtype=np.float32))
    return tmp_path / "index"


def test_retrieval_picks_up_a_published_extension(index_dir: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    stage = RetrievalStage(index_dir, n_candidates=10, feature_repo=repo, refresh_seconds=0)
    direction = np.zeros((1, 8), np.float32)
    direction[0, 3] = 1.0
    before = stage.retrieve(direction, False, np.empty(0, np.int64), np.empty(0, np.int64))
    assert len(stage.item_ids) == 50 and before.max() < 50
    new = np.zeros((2, 8), np.float32)
    new[:, 3] = [5.0, 4.0]  # far above any unit-norm base vector on this query
    publish_extension(repo, np.array([900, 901]), new)
    after = stage.retrieve(direction, False, np.empty(0, np.int64), np.empty(0, np.int64))
    assert after[:2].tolist() == [50, 51]  # rows n_base.. are the new items
    assert stage.item_ids[after[:2]].tolist() == [900, 901]
    assert stage._base_index.ntotal == 50  # the base index is never changed
    # seen-filtering and cold start know the new rows too
    assert 50 not in stage.retrieve(direction, False, np.array([900]), np.empty(0, np.int64)).tolist()
    assert set(stage.retrieve(direction, True, np.empty(0, np.int64), np.empty(0, np.int64)).tolist()) <= set(range(52))


def test_extension_versions_are_cumulative_and_validated(tmp_path: Path) -> None:
    first = publish_extension(tmp_path, np.array([1]), np.ones((1, 4), np.float32))
    second = publish_extension(tmp_path, np.array([1, 2]), np.ones((2, 4), np.float32))
    assert second > first
    ext = load_extension(tmp_path)
    assert ext.version == second and ext.item_ids.tolist() == [1, 2]
    watcher = ExtensionWatcher(tmp_path, refresh_seconds=0)
    assert watcher.poll().version == second and watcher.poll() is None
    with pytest.raises(SchemaError, match="unique"):
        publish_extension(tmp_path, np.array([3, 3]), np.ones((2, 4), np.float32))
    with pytest.raises(SchemaError, match="2 item ids"):
        publish_extension(tmp_path, np.array([3, 4]), np.ones((3, 4), np.float32))


def test_catalog_rows_past_its_end_come_back_missing() -> None:
    """Retrieval may poll a new extension before ranking's catalog has the items: those rows gather
    as id -1, no category, unavailable (never recommended), the others as usual."""
    from cascade.online.catalog import EncodedCatalog

    n = 3
    catalog = EncodedCatalog("v1", np.array([7, 8, 9]), np.arange(n * 2).reshape(n, 2), np.ones((n, 1), np.float32),
                             np.zeros((n, 0), np.int64), np.array([11, 12, 13]), np.array([True, True, False]), 0, 0.0)
    got = catalog.gather(np.array([1, 3, 0, 4]))
    assert got.item_ids.tolist() == [8, -1, 7, -1]
    assert got.available.tolist() == [True, False, True, False]
    assert got.category_keys.tolist() == [12, 0, 11, 0]
    assert got.cat.shape == (4, 2) and got.snapshot_version == "v1"
