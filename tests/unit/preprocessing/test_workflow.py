"""The declarative graph: selectors >> ops, schema known before fitting, fit statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cascade.errors import SchemaError
from cascade.preprocessing import (
    Bucketize, Categorify, FillMissing, FittedWorkflow, HashBucket, InputColumn, ListSlice, Normalize, Workflow,
    default_workflow,
)
from cascade.workflows.dataset import DatasetInfo, load_dataset

INPUTS = [
    InputColumn(name="a", entity="item", dtype="float64"),
    InputColumn(name="b", entity="item", dtype="float64"),
    InputColumn(name="s", entity="user", dtype="string"),
    InputColumn(name="l", entity="user", dtype="string", is_list=True),
]


def test_selector_graph_and_schema_before_fit():
    with pytest.raises(SchemaError, match="outputs \\['a'\\] more than once"):
        Workflow([["a", "b"] >> FillMissing() >> Normalize(), ["a"] >> Bucketize(boundaries=[1.0])], INPUTS)
    wf = Workflow(
        [["a", "b"] >> FillMissing() >> Normalize(), ["s"] >> HashBucket(num_buckets=7),
         ["l"] >> ListSlice(length=3) >> Categorify()],
        INPUTS,
    )
    schema = {s.name: s for s in wf.output_schema()}
    assert [s.name for s in wf.output_schema("item")] == ["a", "b"]
    assert schema["a"].kind == "continuous" and schema["a"].dtype == "float32"
    assert schema["s"].cardinality == 8 and schema["s"].entity == "user"
    assert schema["l"].list_length == 3 and schema["l"].cardinality is None  # known after fit
    a_ops, b_ops = wf.pipelines[0].ops, wf.pipelines[1].ops
    assert a_ops[1] is not b_ops[1]  # each column gets its own op copy
    assert Workflow.from_config(wf.config()).config_hash() == wf.config_hash()


def test_graph_type_errors():
    with pytest.raises(SchemaError, match="column 's': Normalize accepts int64/float64 values, got string"):
        Workflow([["s"] >> Normalize()], INPUTS)
    with pytest.raises(SchemaError, match="list column 'l' needs a ListSlice"):
        Workflow([["l"] >> Categorify()], INPUTS)
    with pytest.raises(SchemaError, match="string values must be encoded"):
        Workflow([["l"] >> ListSlice(length=2)], INPUTS)
    with pytest.raises(SchemaError, match="column 's': ListSlice needs a list column"):
        Workflow([["s"] >> ListSlice(length=2) >> Categorify()], INPUTS)
    with pytest.raises(SchemaError, match="selects column 'zz'"):
        Workflow([["zz"] >> Normalize()], INPUTS)
    with pytest.raises(SchemaError, match="vocab_from='a' needs a column"):
        Workflow([["l"] >> ListSlice(length=2) >> Categorify(vocab_from="a")], INPUTS)


def test_default_workflow_schema(tiny_dataset: Path):
    wf = default_workflow(DatasetInfo.load(tiny_dataset))
    names = [(s.entity, s.name) for s in wf.output_schema()]
    assert names == [
        ("user", "user_id"), ("user", "country"), ("user", "age_bucket"), ("user", "activity"),
        ("user", "recent_items"), ("user", "n_interactions"),
        ("item", "item_id"), ("item", "category"), ("item", "genres"), ("item", "price"), ("item", "first_seen_age"),
    ]  # title (text) and available (business rule) are not features
    assert {c.name for c in wf.input_columns("item")} == {"item_id", "category", "genres", "price", "first_seen"}


def test_fit_statistics_come_from_train_weighted_by_interactions(fitted: FittedWorkflow, tiny_dataset: Path):
    paths, _ = load_dataset(tiny_dataset)
    train = pd.read_parquet(paths.train)
    counts = train.item_id.value_counts()
    item = fitted.categorify("item_id")
    expected = counts[counts >= item.min_frequency]
    assert sorted(item.vocabulary().tolist()) == sorted(expected.index.tolist())
    assert item.counts().tolist() == sorted(expected.tolist(), reverse=True)
    items = pd.read_parquet(paths.items).set_index("item_id")
    cat_counts = items.category.reindex(train.item_id).value_counts()  # the join, materialised
    category = fitted.categorify("category")
    kept = cat_counts[cat_counts >= category.min_frequency]
    assert dict(zip(category.vocabulary(), category.counts())) == {k: float(v) for k, v in kept.items()}
    price = items.price.reindex(train.item_id).to_numpy()
    normalize = fitted.workflow.pipelines[[p.name for p in fitted.workflow.pipelines].index("price")].ops[1]
    filled = np.where(np.isnan(price), np.nanmean(price), price)
    assert normalize.get_state()[0]["mean"] == pytest.approx(filled.mean())
    assert normalize.get_state()[0]["std"] == pytest.approx(filled.std())
    assert fitted.meta.train_rows == len(train)
    assert fitted.meta.timestamp_range == (train.timestamp.min(), train.timestamp.max())
