"""ONNX Runtime vs PyTorch within 1e-5 absolute for the user tower, item tower and DLRM, on random
valid inputs at several batch sizes (including 1); input names = workflow output names. The DLRM
graph takes the user-entity inputs with their own batch U, the item-entity inputs with batch N and
``user_row`` [N]; it must score like the PyTorch model fed N user rows (one per candidate)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cascade.models.dlrm import DLRM
from cascade.models.features import FeatureSpec
from cascade.models.two_tower import TwoTower
from cascade.workflows.onnx_export import USER_ROW, example_inputs, export_dlrm, export_two_tower, onnx_session, run_onnx

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
@pytest.mark.parametrize("which", ["user_tower", "item_tower"])
def test_tower_parity(exported: tuple, which: str, batch: int) -> None:
    tt, _, out = exported
    fn, specs, output = {
        "user_tower": (tt.query, tt.user_inputs, "query"),
        "item_tower": (tt.item, tt.item_inputs, "item_embedding"),
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


@pytest.mark.parametrize(("users", "batch"), [(1, 1), (1, 300), (3, 7), (4, 300)])
def test_dlrm_parity_user_rows_gathered_in_graph(exported: tuple, users: int, batch: int) -> None:
    _, dlrm, out = exported
    session = onnx_session(out / "dlrm.onnx")
    assert [i.name for i in session.get_inputs()] == [s.name for s in SPECS] + [USER_ROW]
    assert [o.name for o in session.get_outputs()] == ["score"]
    u = example_inputs(dlrm.user_inputs, users, seed=users)
    x = example_inputs(dlrm.item_inputs, batch, seed=batch)
    user_row = np.random.default_rng(batch).integers(0, users, size=batch).astype(np.int64)
    with torch.no_grad():  # reference: the model fed one user row per candidate (the former serving graph)
        ref = dlrm({**{k: torch.from_numpy(v[user_row]) for k, v in u.items()},
                    **{k: torch.from_numpy(v) for k, v in x.items()}}).numpy()
        gathered = dlrm({k: torch.from_numpy(v) for k, v in {**u, **x}.items()},
                        user_row=torch.from_numpy(user_row)).numpy()
    got = run_onnx(session, {**u, **x, USER_ROW: user_row})
    assert got.shape == ref.shape == (batch,)
    assert np.abs(got - ref).max() <= 1e-5
    assert np.abs(gathered - ref).max() <= 1e-5


def test_inputs_have_dynamic_batch_and_types(exported: tuple) -> None:
    _, _, out = exported
    session = onnx_session(out / "dlrm.onnx")
    args = session.get_inputs()
    for arg, spec in zip(args, SPECS):
        assert arg.shape[0] == ("users" if spec.entity == "user" else "batch")
        assert arg.type == ("tensor(int64)" if spec.is_categorical else "tensor(float)")
        assert len(arg.shape) == (2 if spec.is_list else 1)
    assert args[-1].name == USER_ROW and args[-1].shape == ["batch"] and args[-1].type == "tensor(int64)"
    assert session.get_outputs()[0].shape == ["batch"]
