"""ONNX Runtime vs PyTorch within 1e-5 absolute for the user tower, item tower and DLRM, on random
valid inputs at several batch sizes (including 1); input names = workflow output names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cascade.models.dlrm import DLRM
from cascade.models.features import FeatureSpec
from cascade.models.two_tower import TwoTower
from cascade.workflows.onnx_export import example_inputs, export_dlrm, export_two_tower, onnx_session, run_onnx

SPECS = [
    FeatureSpec("user_id", "user", "categorical", "int64", 300),
    FeatureSpec("age_bucket", "user", "categorical", "int64", 8),
    FeatureSpec("activity", "user", "continuous", "float32"),
    FeatureSpec("recent_items", "user", "categorical", "int64", 200, 50),
    FeatureSpec("n_interactions", "user", "continuous", "float32"),
    FeatureSpec("item_id", "item", "categorical", "int64", 200),
    FeatureSpec("category", "item", "categorical", "int64", 11),
    FeatureSpec("genres", "item", "categorical", "int64", 15, 8),
    FeatureSpec("price", "item", "continuous", "float32"),
    FeatureSpec("first_seen_age", "item", "continuous", "float32"),
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[TwoTower, DLRM, Path]:
    torch.manual_seed(0)
    tt = TwoTower(SPECS).eval()
    dlrm = DLRM(SPECS, two_tower=tt).eval()
    # non-trivial weights beyond init
    with torch.no_grad():
        for p in dlrm.parameters():
            p.add_(0.05 * torch.randn_like(p))
    out = tmp_path_factory.mktemp("onnx")
    export_two_tower(tt, out)
    export_dlrm(dlrm, out)
    return tt, dlrm, out


@pytest.mark.parametrize("batch", [1, 7, 300])
@pytest.mark.parametrize("which", ["user_tower", "item_tower", "dlrm"])
def test_parity(exported: tuple, which: str, batch: int) -> None:
    tt, dlrm, out = exported
    fn, specs, output = {
        "user_tower": (tt.query, tt.user_inputs, "query"),
        "item_tower": (tt.item, tt.item_inputs, "item_embedding"),
        "dlrm": (dlrm.forward, SPECS, "score"),
    }[which]
    session = onnx_session(out / f"{which}.onnx")
    assert [i.name for i in session.get_inputs()] == [s.name for s in specs]
    assert [o.name for o in session.get_outputs()] == [output]
    x = example_inputs(specs, batch, seed=batch)
    with torch.no_grad():
        ref = fn({k: torch.from_numpy(v) for k, v in x.items()}).numpy()
    got = run_onnx(session, x)
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= 1e-5


def test_inputs_have_dynamic_batch_and_types(exported: tuple) -> None:
    _, _, out = exported
    session = onnx_session(out / "dlrm.onnx")
    for arg, spec in zip(session.get_inputs(), SPECS):
        assert isinstance(arg.shape[0], str)
        assert arg.type == ("tensor(int64)" if spec.is_categorical else "tensor(float)")
        assert len(arg.shape) == (2 if spec.is_list else 1)
