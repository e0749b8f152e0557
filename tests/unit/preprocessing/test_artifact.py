"""Artifact round trip: open formats only, provenance recorded, loads fast, same outputs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

import cascade
from cascade.errors import DataValidationError, NotFoundError
from cascade.preprocessing import FittedWorkflow
from cascade.workflows.dataset import DatasetInfo


def test_round_trip(fitted: FittedWorkflow, tiny_dataset: Path, tmp_path: Path):
    out = fitted.save(tmp_path / "wf")
    files = sorted(p.name for p in out.rglob("*") if p.is_file())
    assert files and all(name.endswith((".json", ".npy")) for name in files)  # no pickles
    for npy in out.rglob("*.npy"):
        np.load(npy, allow_pickle=False)
    started = time.perf_counter()
    loaded = FittedWorkflow.load(out)
    assert time.perf_counter() - started < 0.5
    assert loaded.output_schema() == fitted.output_schema()
    assert loaded.meta == fitted.meta
    assert loaded.meta.dataset_hash == DatasetInfo.load(tiny_dataset).content_hash
    assert loaded.meta.code_version.startswith(cascade.__version__ + "+")
    for entity in ("user", "item"):
        a = fitted.transform_dataset(tiny_dataset, entity, progress=False).columns
        b = loaded.transform_dataset(tiny_dataset, entity, progress=False).columns
        assert all(a[k].tobytes() == b[k].tobytes() for k in a)
    assert loaded.vocabulary("category").dtype == object
    assert loaded.vocabulary("item_id").dtype == np.int64


def test_load_errors(fitted: FittedWorkflow, tmp_path: Path):
    with pytest.raises(NotFoundError, match="workflow.json is missing"):
        FittedWorkflow.load(tmp_path / "nothing")
    out = fitted.save(tmp_path / "wf")
    payload = json.loads((out / "workflow.json").read_text())
    payload["meta"]["format_version"] = 99
    (out / "workflow.json").write_text(json.dumps(payload))
    with pytest.raises(DataValidationError, match="format_version 99 is not supported"):
        FittedWorkflow.load(out)


def test_save_replaces_atomically(fitted: FittedWorkflow, tmp_path: Path):
    target = tmp_path / "wf"
    fitted.save(target)
    fitted.save(target)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
