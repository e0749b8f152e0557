"""Items encoded once per snapshot (cascade/online/catalog.py) on a real Feast repo (SQLite) with a
real fitted workflow: the encoded catalog equals the workflow run on the same raw rows, a refresh
swaps in a newer snapshot and a broken one is rejected while the old one keeps serving."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "features"))
from tiny_dataset import ITEM_IDS, write_tiny_dataset  # noqa: E402

from cascade.online.catalog import CatalogRefresher, category_key, category_keys, prepare_catalog  # noqa: E402

MISSING_ID = 999  # in the index, not in the snapshot


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    from cascade.features.repo import generate_feature_repo
    from cascade.features.snapshot import ItemSnapshot
    from cascade.features.store import apply, materialize
    from cascade.online.stages import encoded_layout
    from cascade.workflows.artifacts import fit_workflow

    root = tmp_path_factory.mktemp("catalog")
    _tiny_dataset_with_plain_strings(root / "data")
    workflow = fit_workflow(root / "data", root / "workflow", progress=False)
    generate_feature_repo(root / "data", root / "repo")
    apply(root / "repo")
    materialize(root / "repo")
    snapshot = ItemSnapshot.load_latest(root / "repo")
    index_ids = np.array([50, MISSING_ID, *ITEM_IDS[::-1]], dtype=np.int64)  # not catalog order
    return root, workflow, snapshot, index_ids, encoded_layout(workflow, "item")


def _tiny_dataset_with_plain_strings(target: Path) -> None:
    """The Feast tests' hand-checkable dataset (item nulls, a list column, catalog order != id
    order) with the users' dictionary-typed ``country`` as plain strings, which the workflow fits."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    write_tiny_dataset(target)
    users = pq.read_table(target / "users.parquet")
    users = users.set_column(users.schema.get_field_index("country"), "country",
                             users.column("country").cast(pa.string()))
    pq.write_table(users, target / "users.parquet")
    info = json.loads((target / "dataset.json").read_text())
    for column in info["user_columns"]:
        if column["name"] == "country":
            column["dtype"] = "string"
    (target / "dataset.json").write_text(json.dumps(info))


def _encode_rows(workflow, layout, columns):
    from cascade.online.tensors import pack_encoded

    encoded = workflow.transform_batch(columns, entity="item")
    return pack_encoded(encoded, layout, len(next(iter(columns.values()))))


def test_encoded_rows_equal_the_workflow_on_the_raw_rows(setup) -> None:
    _, workflow, snapshot, index_ids, layout = setup
    catalog = prepare_catalog(snapshot, workflow, index_ids, layout)
    assert len(catalog) == len(index_ids) and catalog.n_missing == 1 and catalog.version == snapshot.version
    known = np.flatnonzero(index_ids != MISSING_ID)
    rows = snapshot.rows_for(index_ids[known])
    names = [c.name for c in workflow.input_columns("item")]
    want = _encode_rows(workflow, layout, {n: snapshot.columns[n][rows] for n in names})
    for got, expected in zip((catalog.cat, catalog.cont, catalog.lists), want):
        np.testing.assert_array_equal(got[known], expected)
    # one row at a time gives the same rows (the encoding of a row does not depend on the others)
    for j, r in enumerate(rows[:3]):
        alone = _encode_rows(workflow, layout, {n: snapshot.columns[n][[r]] for n in names})
        np.testing.assert_array_equal(catalog.cat[known[j]], alone[0][0])
        np.testing.assert_array_equal(catalog.lists[known[j]], alone[2][0])
    assert catalog.item_ids.tolist() == index_ids.tolist()
    expected_available = np.asarray(snapshot.columns["available"])[rows].astype(bool)
    assert catalog.available[known].tolist() == expected_available.tolist()
    assert catalog.category_keys[known].tolist() == category_keys(snapshot.columns["category"][rows]).tolist()


def test_items_missing_from_the_snapshot_get_null_features_and_are_unavailable(setup) -> None:
    _, workflow, snapshot, index_ids, layout = setup
    catalog = prepare_catalog(snapshot, workflow, index_ids, layout)
    m = int(np.flatnonzero(index_ids == MISSING_ID)[0])
    assert not catalog.available[m] and catalog.category_keys[m] == 0 and catalog.item_ids[m] == MISSING_ID
    null_row = {}
    for c in workflow.input_columns("item"):
        if c.name == "item_id":
            null_row[c.name] = np.array([MISSING_ID], dtype=np.int64)
        elif c.is_list:
            null_row[c.name] = np.empty(1, dtype=object)
            null_row[c.name][0] = np.empty(0, dtype=object)
        elif c.dtype in ("int64", "float64", "bool"):
            null_row[c.name] = np.array([np.nan])
        else:
            null_row[c.name] = np.array([None], dtype=object)
    want = _encode_rows(workflow, layout, null_row)
    for got, expected in zip((catalog.cat, catalog.cont, catalog.lists), want):
        np.testing.assert_array_equal(got[m], expected[0])


def test_gather_is_a_row_gather_and_the_catalog_is_read_only(setup) -> None:
    _, workflow, snapshot, index_ids, layout = setup
    catalog = prepare_catalog(snapshot, workflow, index_ids, layout)
    rows = np.array([[3, 0, 1, 3]])  # [1, N] as a stage tensor
    got = catalog.gather(rows)
    np.testing.assert_array_equal(got.cat, catalog.cat[[3, 0, 1, 3]])
    np.testing.assert_array_equal(got.lists, catalog.lists[[3, 0, 1, 3]])
    assert got.item_ids.tolist() == index_ids[[3, 0, 1, 3]].tolist() and got.snapshot_version == snapshot.version
    with pytest.raises(ValueError):
        catalog.cat[0, 0] = 1


def test_category_keys_are_stable_and_null_is_zero() -> None:
    assert category_key(None) == category_key("") == category_key(float("nan")) == 0
    assert category_key("Drama") == category_key(b"Drama") != category_key("Comedy")
    assert category_key("Drama") == category_key(np.str_("Drama"))  # numpy strings hash like str
    keys = category_keys(np.array(["a", None, "a", "b"], dtype=object))
    assert keys[0] == keys[2] != keys[3] and keys[1] == 0


def test_business_rules_apply_boosts_and_caps_through_category_keys() -> None:
    from cascade.business.config import BusinessRules
    from cascade.business.rules import Candidates
    from cascade.online.stages import BusinessLogicStage

    rules = BusinessRules.model_validate({"category_boosts": {"b": 10.0},
                                          "category_caps": [{"window": 3, "max_per_category": 1}]})
    stage = BusinessLogicStage(rules, "v1")
    keys = category_keys(np.array(["a", "a", "b", "a", None], dtype=object))
    selection = stage.apply(
        Candidates(np.arange(5, dtype=np.int64), np.array([5, 4, 0, 3, 2], np.float32), stage.categories(keys),
                   np.ones(5, dtype=bool)),
        top_k=3, seen=np.empty(0, np.int64), exclude=np.empty(0, np.int64), explore=0.0, seed=None)
    assert selection.item_ids.tolist() == [2, 0, 4]  # the boosted "b" first, one "a", then the uncategorised


def test_refresher_swaps_a_newer_snapshot_and_rejects_a_broken_one(setup) -> None:
    from cascade.features.repo import SNAPSHOT_DIR
    from cascade.features.store import materialize

    root, workflow, snapshot, index_ids, layout = setup
    repo = root / "repo"
    prepare = lambda s: prepare_catalog(s, workflow, index_ids, layout)  # noqa: E731
    failures: list[str] = []
    refresher = CatalogRefresher(repo, prepare, prepare(snapshot), interval_s=0, retry_s=3600,
                                 on_failure=lambda version, error: failures.append(version))
    assert refresher.check() is None  # nothing newer
    materialize(repo)
    newer = refresher.check()
    assert newer is not None and newer > snapshot.version and refresher.catalog.version == newer
    good = refresher.catalog
    # publish a broken snapshot: LATEST points at a version whose items.parquet is garbage
    broken = "99991231T000000000000Z-deadbeef"
    (repo / SNAPSHOT_DIR / broken).mkdir()
    (repo / SNAPSHOT_DIR / broken / "items.parquet").write_bytes(b"not parquet")
    (repo / SNAPSHOT_DIR / broken / "meta.json").write_text('{"version": "%s"}' % broken)
    (repo / SNAPSHOT_DIR / "LATEST").write_text(broken + "\n")
    assert refresher.check() is None
    assert failures == [broken] and refresher.failures == 1 and refresher.catalog is good
    assert refresher.check() is None and refresher.failures == 1  # not retried before retry_s
    (repo / SNAPSHOT_DIR / "LATEST").write_text(newer + "\n")  # leave the repo as found


def test_refresher_thread_polls_in_the_background(setup) -> None:
    import time

    from cascade.features.store import materialize

    root, workflow, snapshot, index_ids, layout = setup
    prepare = lambda s: prepare_catalog(s, workflow, index_ids, layout)  # noqa: E731
    from cascade.features.snapshot import ItemSnapshot

    refresher = CatalogRefresher(root / "repo", prepare, prepare(ItemSnapshot.load_latest(root / "repo")),
                                 interval_s=0.05).start()
    try:
        before = refresher.catalog.version
        materialize(root / "repo")
        deadline = time.monotonic() + 20
        while refresher.catalog.version == before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert refresher.catalog.version > before
    finally:
        refresher.stop()
