"""Torch model definitions on synthetic feature specs: shapes, normalisation, masking, seeding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cascade.errors import SchemaError
from cascade.models.dlrm import DLRM
from cascade.models.features import FeatureSpec
from cascade.models.two_tower import TwoTower, TwoTowerConfig, in_batch_softmax_loss
from cascade.workflows.onnx_export import example_inputs

SPECS = [
    FeatureSpec("user_id", "user", "categorical", "int64", 100),
    FeatureSpec("country", "user", "categorical", "int64", 7),
    FeatureSpec("activity", "user", "continuous", "float32"),
    FeatureSpec("recent_items", "user", "categorical", "int64", 60, 50),
    FeatureSpec("n_interactions", "user", "continuous", "float32"),
    FeatureSpec("item_id", "item", "categorical", "int64", 60),
    FeatureSpec("category", "item", "categorical", "int64", 9),
    FeatureSpec("genres", "item", "categorical", "int64", 12, 8),
    FeatureSpec("price", "item", "continuous", "float32"),
]


def _torch(x: dict) -> dict:
    return {k: torch.from_numpy(v) for k, v in x.items()}


def test_two_tower_outputs_are_unit_norm_and_shared_table() -> None:
    torch.manual_seed(0)
    model = TwoTower(SPECS, TwoTowerConfig(dim=16)).eval()
    users = _torch(example_inputs(model.user_inputs, 5))
    items = _torch(example_inputs(model.item_inputs, 5))
    q, v = model.query(users), model.item(items)
    assert q.shape == (5, 16) and v.shape == (5, 16)
    assert torch.allclose(q.norm(dim=1), torch.ones(5), atol=1e-5)
    pooler = model.user_tower.encoder.histories["recent_items"]
    assert pooler.embedding is model.item_embedding  # history pooled through the item-id table
    assert model.item_tower.encoder.scalar["item_id"] is model.item_embedding


def test_empty_history_gives_finite_query() -> None:
    torch.manual_seed(0)
    model = TwoTower(SPECS).eval()
    users = _torch(example_inputs(model.user_inputs, 3))
    users["recent_items"] = torch.zeros(3, 50, dtype=torch.int64)
    assert torch.isfinite(model.query(users)).all()


def test_history_vocabulary_must_match_item_id() -> None:
    bad = [s if s.name != "recent_items" else FeatureSpec("recent_items", "user", "categorical", "int64", 61, 50) for s in SPECS]
    with pytest.raises(SchemaError, match="recent_items"):
        TwoTower(bad)


def test_in_batch_loss_masks_duplicates_and_prefers_aligned_pairs() -> None:
    q = torch.nn.functional.normalize(torch.eye(4), dim=1)
    ids = torch.tensor([0, 1, 2, 2])
    aligned = in_batch_softmax_loss(q, q, ids, torch.zeros(4), 0.1)
    shuffled = in_batch_softmax_loss(q, q[[1, 0, 3, 2]], ids, torch.zeros(4), 0.1)
    assert aligned < shuffled


def test_dlrm_scores_shape_and_retrieval_input() -> None:
    torch.manual_seed(0)
    tt = TwoTower(SPECS).eval()
    model = DLRM(SPECS, two_tower=tt).eval()
    x = _torch(example_inputs(SPECS, 6))
    s = model(x)
    assert s.shape == (6,)
    q, v = tt.query(x), tt.item(x)
    assert torch.allclose(model(x, query=q, item=v), s, atol=1e-6)
    assert not any(p.requires_grad for p in model.two_tower.parameters())


def test_seeded_init_is_deterministic() -> None:
    torch.manual_seed(3)
    a = TwoTower(SPECS).state_dict()
    torch.manual_seed(3)
    b = TwoTower(SPECS).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert np.isfinite(a["item_embedding.weight"].numpy()).all()


def test_untrained_dlrm_is_the_retrieval_order_and_item_stats_feed_it() -> None:
    torch.manual_seed(0)
    tt = TwoTower(SPECS).eval()
    model = DLRM(SPECS, two_tower=tt).eval()
    x = _torch(example_inputs(SPECS, 6))
    q, v = tt.query(x), tt.item(x)
    retrieval = (q * v).sum(1) / tt.config.temperature
    assert torch.allclose(model(x), retrieval, atol=1e-5)  # zero-initialised correction
    torch.nn.init.normal_(model.top[-1].weight)
    before = model(x)
    model.set_item_stats(torch.randn(60, 2))
    assert not torch.allclose(model(x), before)
    with pytest.raises(ValueError, match="item_stats"):
        model.set_item_stats(torch.zeros(5, 2))


def test_listwise_loss_prefers_positive_on_top() -> None:
    from cascade.workflows.train_ranking import listwise_loss

    pos = torch.tensor([[True, False, False, False]])
    valid = torch.tensor([[True, True, True, False]])
    good = listwise_loss(torch.tensor([[5.0, 0.0, 0.0, 99.0]]), pos, valid)  # invalid slot ignored
    bad = listwise_loss(torch.tensor([[0.0, 5.0, 0.0, -99.0]]), pos, valid)
    assert good < bad
    expected = -torch.log_softmax(torch.tensor([5.0, 0.0, 0.0]), 0)[0]
    assert torch.allclose(good, expected, atol=1e-5)


@pytest.mark.parametrize("with_towers", [True, False])
def test_dlrm_user_side_once_per_user_row_equals_repeated_users(with_towers: bool) -> None:
    torch.manual_seed(0)
    tt = TwoTower(SPECS).eval() if with_towers else None
    model = DLRM(SPECS, two_tower=tt).eval()
    torch.nn.init.normal_(model.top[-1].weight)
    users = example_inputs(model.user_inputs, 3, seed=1)
    items = example_inputs(model.item_inputs, 8, seed=2)
    user_row = np.array([0, 2, 2, 1, 0, 0, 1, 2])
    with torch.no_grad():
        repeated = model({**_torch({k: v[user_row] for k, v in users.items()}), **_torch(items)})
        gathered = model({**_torch(users), **_torch(items)}, user_row=torch.from_numpy(user_row))
        assert gathered.shape == (8,)
        assert torch.allclose(gathered, repeated, atol=1e-5)
        if tt is not None:  # precomputed embeddings: query per user row, item per item row
            q, v = tt.query(_torch(users)), tt.item(_torch(items))
            pre = model({**_torch(users), **_torch(items)}, query=q, item=v, user_row=torch.from_numpy(user_row))
            assert torch.allclose(pre, repeated, atol=1e-5)
