"""RankingStage feeds dlrm.onnx ONE user row plus ``user_row`` = 0 per candidate (the user side runs
once per request); scores equal the PyTorch DLRM fed the user broadcast to every candidate row,
and a dlrm.onnx exported before ``user_row`` existed (all inputs on one batch axis) still serves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cascade.models.dlrm import DLRM
from cascade.models.features import specs_from_schema
from cascade.models.two_tower import TwoTower
from cascade.online.stages import RankingStage, encoded_layout
from cascade.online.tensors import pack_encoded
from cascade.workflows.onnx_export import example_inputs, export_dlrm, export_module


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    from cascade.workflows.artifacts import fit_workflow
    from cascade.workflows.synthetic import SyntheticConfig, generate

    root = tmp_path_factory.mktemp("rank")
    generate(root / "data", SyntheticConfig(n_users=40, n_items=60, n_interactions=800, n_categories=4, n_brands=6, seed=1),
             name="rank", progress=False)
    workflow = fit_workflow(root / "data", root / "workflow", progress=False)
    specs = specs_from_schema(workflow.output_schema())
    torch.manual_seed(0)
    model = DLRM(specs, two_tower=TwoTower(specs).eval()).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        model.set_item_stats(torch.randn(model.item_stats.shape))
    export_dlrm(model, root / "new")
    export_module(model.forward, model, model.specs, "score", root / "legacy" / "dlrm.onnx")  # one batch axis
    return workflow, model, root


@pytest.mark.parametrize("n", [1, 300])
def test_one_user_row_scores_like_the_broadcast_model(setup, n: int) -> None:
    workflow, model, root = setup
    user = example_inputs(model.user_inputs, 1, seed=n)
    items = example_inputs(model.item_inputs, n, seed=n + 1)
    packed_user = pack_encoded(user, encoded_layout(workflow, "user"), 1)
    packed_items = pack_encoded(items, encoded_layout(workflow, "item"), n)
    with torch.no_grad():
        ref = model({**{k: torch.from_numpy(np.repeat(v, n, axis=0)) for k, v in user.items()},
                     **{k: torch.from_numpy(v) for k, v in items.items()}}).numpy()
    new = RankingStage(root / "new" / "dlrm.onnx", workflow)
    legacy = RankingStage(root / "legacy" / "dlrm.onnx", workflow)
    assert new.gathers_user and not legacy.gathers_user
    for stage in (new, legacy):
        got = stage.score(*packed_user, *packed_items)
        assert got.shape == (n,) and got.dtype == np.float32
        assert np.abs(got - ref).max() <= 1e-5
    assert RankingStage.score(new, *packed_user, *(a[:0] for a in packed_items)).shape == (0,)


def test_new_graph_takes_the_user_on_its_own_batch_axis(setup) -> None:
    _, _, root = setup
    import onnxruntime as ort

    session = ort.InferenceSession(str(Path(root / "new" / "dlrm.onnx")), providers=["CPUExecutionProvider"])
    axes = {i.name: i.shape[0] for i in session.get_inputs()}
    assert axes.pop("user_row") == "batch"
    user_names = {s.name for s in setup[1].user_inputs}
    assert all(axis == ("users" if name in user_names else "batch") for name, axis in axes.items())


def test_a_batch_of_requests_scores_like_each_request_alone(setup) -> None:
    """score_many (the batching ranking stage: B user rows, all candidates, user_row = request)
    gives every request exactly the scores it gets alone, for both graphs and empty requests."""
    workflow, model, root = setup
    sizes = [300, 0, 7, 1, 120]
    users = [pack_encoded(example_inputs(model.user_inputs, 1, seed=10 + b), encoded_layout(workflow, "user"), 1)
             for b in range(len(sizes))]
    items = [pack_encoded(example_inputs(model.item_inputs, n, seed=20 + b), encoded_layout(workflow, "item"), n)
             for b, n in enumerate(sizes)]
    for stage in (RankingStage(root / "new" / "dlrm.onnx", workflow), RankingStage(root / "legacy" / "dlrm.onnx", workflow)):
        batched = stage.score_many(users, items)
        assert [len(s) for s in batched] == sizes
        for user, cands, got in zip(users, items, batched):
            np.testing.assert_allclose(got, stage.score(*user, *cands), rtol=1e-6, atol=1e-6)
            assert got.dtype == np.float32


def test_query_tower_batch_matches_one_user_at_a_time(setup) -> None:
    from cascade.online.stages import QueryTowerStage
    from cascade.workflows.onnx_export import export_two_tower

    workflow, model, root = setup
    export_two_tower(model.two_tower, root / "tower")
    stage = QueryTowerStage(root / "tower" / "user_tower.onnx", workflow)
    users = [pack_encoded(example_inputs(model.user_inputs, 1, seed=30 + b), encoded_layout(workflow, "user"), 1)
             for b in range(5)]
    batched = stage.query_many(users)
    for user, got in zip(users, batched):
        assert got.shape[0] == 1
        np.testing.assert_allclose(got, stage.query(*user), rtol=1e-6, atol=1e-6)


def test_candidate_source_and_score_reach_the_graph(tmp_path: Path, setup) -> None:
    """A DLRM trained with candidate features takes ``candidate_source``/``candidate_score``: the
    stage feeds what retrieval sent (ONNX == PyTorch), 0 when nothing was sent, and names a
    wrong-length input."""
    from cascade.errors import InvalidInputError
    from cascade.models.dlrm import candidate_specs

    workflow, _, _ = setup
    specs = specs_from_schema(workflow.output_schema()) + candidate_specs()
    torch.manual_seed(1)
    model = DLRM(specs, two_tower=TwoTower(specs_from_schema(workflow.output_schema())).eval()).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    export_dlrm(model, tmp_path)
    stage = RankingStage(tmp_path / "dlrm.onnx", workflow)
    assert stage.takes_candidate_features
    n = 20
    user = example_inputs(model.user_inputs, 1, seed=3)
    base_items = example_inputs([s for s in model.item_inputs if s.name not in ("candidate_source", "candidate_score")],
                                n, seed=4)
    source = np.random.default_rng(0).integers(0, 8, size=n).astype(np.int64)
    score = np.random.default_rng(1).random(n).astype(np.float32) * 2
    packed_user = pack_encoded(user, encoded_layout(workflow, "user"), 1)
    packed_items = pack_encoded(base_items, encoded_layout(workflow, "item"), n)

    def reference(src: np.ndarray, sc: np.ndarray) -> np.ndarray:
        feats = {**{k: torch.from_numpy(np.repeat(v, n, axis=0)) for k, v in user.items()},
                 **{k: torch.from_numpy(v) for k, v in base_items.items()},
                 "candidate_source": torch.from_numpy(src), "candidate_score": torch.from_numpy(sc)}
        with torch.no_grad():
            return model(feats).numpy()

    got = stage.score(*packed_user, *packed_items, (source, score))
    assert np.abs(got - reference(source, score)).max() <= 1e-5
    zeros = stage.score(*packed_user, *packed_items)
    assert np.abs(zeros - reference(np.zeros(n, np.int64), np.zeros(n, np.float32))).max() <= 1e-5
    assert np.abs(got - zeros).max() > 1e-4  # the inputs matter
    with pytest.raises(InvalidInputError, match="candidate_source/candidate_score"):
        stage.score(*packed_user, *packed_items, (source[:3], score))
