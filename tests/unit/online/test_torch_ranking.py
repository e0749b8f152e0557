"""The ranking stage's GPU backend (cascade/online/torch_ranking.py), run here on the CPU against the
CPU backend (ONNX Runtime on the exported dlrm.onnx): the same DLRM weights read from the artifact
folder (model.pt + meta.json, written by the training code), the same feeds, scores within 1e-3 for
float32 and for the half-precision options (float16 and bfloat16 autocast both run on this CPU),
the same top-10 except exact ties; padding to static shapes (what CUDA graphs replay) changes no
score. The CUDA-only options (graphs, pinned buffers) are measured by benchmarks/gpu_check.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cascade.errors import InvalidInputError
from cascade.models.dlrm import DLRM
from cascade.models.features import specs_from_schema
from cascade.models.two_tower import TwoTower
from cascade.online.onnx import OnnxModel
from cascade.online.stages import RankingStage, encoded_layout
from cascade.online.tensors import pack_encoded
from cascade.online.torch_ranking import TorchRanker, TorchRankingOptions, bucket
from cascade.workflows.onnx_export import example_inputs


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    """A fitted workflow and a DLRM (with its frozen two-tower) saved as training saves them."""
    from cascade.workflows.artifacts import fit_workflow
    from cascade.workflows.synthetic import SyntheticConfig, generate
    from cascade.workflows.train_ranking import RankingResult, RankingTrainConfig, save_ranking
    from cascade.workflows.train_retrieval import RetrievalResult, RetrievalTrainConfig, save_retrieval

    root = tmp_path_factory.mktemp("torch_rank")
    generate(root / "data", SyntheticConfig(n_users=40, n_items=60, n_interactions=800, n_categories=4, n_brands=6, seed=1),
             name="rank", progress=False)
    workflow = fit_workflow(root / "data", root / "workflow", progress=False)
    specs = specs_from_schema(workflow.output_schema())
    torch.manual_seed(0)
    two_tower = TwoTower(specs).eval()
    model = DLRM(specs, two_tower=two_tower).eval()
    with torch.no_grad():  # a trained-looking model: the top MLP's last layer is not zero
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
        model.set_item_stats(torch.randn(model.item_stats.shape))
    save_retrieval(RetrievalResult(two_tower, [], 0, 0.0, 0.0, 0, 0), RetrievalTrainConfig(), root / "artifacts" / "retrieval")
    save_ranking(RankingResult(model, [], 0, 0.0, 0.0, 0.0, 0, 0), RankingTrainConfig(), root / "artifacts" / "ranking")
    return workflow, model, root / "artifacts"


def _requests(workflow, model, sizes: list[int], seed: int):
    users = [pack_encoded(example_inputs(model.user_inputs, 1, seed=seed + b), encoded_layout(workflow, "user"), 1)
             for b in range(len(sizes))]
    items = [pack_encoded(example_inputs(model.item_inputs, n, seed=seed + 100 + b), encoded_layout(workflow, "item"), n)
             for b, n in enumerate(sizes)]
    return users, items


def _same_top_k(reference: np.ndarray, scores: np.ndarray, k: int = 10, tol: float = 1e-6) -> bool:
    """True when every item of ``scores``' top-k scores at least the reference's k-th best (ties allowed)."""
    k = min(k, len(reference))
    top = np.argsort(-scores, kind="stable")[:k]
    return bool(np.all(reference[top] >= np.sort(reference)[::-1][k - 1] - tol))


@pytest.mark.parametrize("dtype,tolerance", [("float32", 1e-5), ("float16", 1e-3), ("bfloat16", 1e-3)])
def test_torch_backend_scores_like_onnx(setup, dtype: str, tolerance: float) -> None:
    workflow, model, artifacts = setup
    onnx = RankingStage(artifacts / "ranking" / "dlrm.onnx", workflow, backend="onnx")
    stage = RankingStage(artifacts / "ranking" / "dlrm.onnx", workflow, backend="torch",
                         torch_options=TorchRankingOptions(dtype=dtype))
    assert isinstance(onnx.model, OnnxModel) and isinstance(stage.model, TorchRanker)
    assert stage.model.providers == [f"torch:cpu:{dtype}"]
    users, items = _requests(workflow, model, [300, 7, 0, 120], seed=3)
    expected = onnx.score_many(users, items)
    got = stage.score_many(users, items)
    for ref, out in zip(expected, got):
        assert out.shape == ref.shape and out.dtype == np.float32
        if len(ref):
            assert np.abs(out - ref).max() <= tolerance, (dtype, float(np.abs(out - ref).max()))
            assert _same_top_k(ref, out, tol=2 * tolerance)


def test_static_shapes_padding_changes_no_score(setup) -> None:
    workflow, model, artifacts = setup
    eager = TorchRanker.from_artifacts(artifacts / "ranking", artifacts / "retrieval")
    padded = TorchRanker.from_artifacts(artifacts / "ranking", artifacts / "retrieval",
                                        options=TorchRankingOptions(static_shapes=True, min_candidates=16))
    for sizes in ([7], [3, 1, 20], [1] * 5):  # user buckets 1, 4, 8; candidate buckets 16, 32
        users, items = _requests(workflow, model, sizes, seed=len(sizes))
        a = RankingStage.__new__(RankingStage)
        a.user, a.items, a.gathers_user = encoded_layout(workflow, "user"), encoded_layout(workflow, "item"), True
        a.model = eager
        b = RankingStage.__new__(RankingStage)
        b.user, b.items, b.gathers_user, b.model = a.user, a.items, True, padded
        for x, y in zip(a.score_many(users, items), b.score_many(users, items)):
            np.testing.assert_allclose(x, y, rtol=0, atol=1e-6)


def test_a_half_precision_ranker_leaves_the_callers_model_alone(setup) -> None:
    workflow, model, artifacts = setup
    users, items = _requests(workflow, model, [50], seed=9)
    before = RankingStage(artifacts / "ranking" / "dlrm.onnx", workflow, backend="onnx").score_many(users, items)[0]
    TorchRanker(model, "cpu", TorchRankingOptions(dtype="float16"))
    assert type(model.two_tower.user_tower).__name__ == "Tower"
    fp32 = TorchRanker(model, "cpu")
    stage = RankingStage.__new__(RankingStage)
    stage.user, stage.items, stage.gathers_user, stage.model = (encoded_layout(workflow, "user"),
                                                                encoded_layout(workflow, "item"), True, fp32)
    assert np.abs(stage.score_many(users, items)[0] - before).max() <= 1e-5


def test_options_and_inputs_are_validated(setup) -> None:
    _, model, artifacts = setup
    with pytest.raises(InvalidInputError, match="dtype must be one of float32, float16, bfloat16"):
        TorchRankingOptions(dtype="int8")
    with pytest.raises(InvalidInputError, match="cuda_graphs or compile"):
        TorchRankingOptions(cuda_graphs=True, compile=True)
    with pytest.raises(InvalidInputError, match="cuda_graphs needs a CUDA device"):
        TorchRanker(model, "cpu", TorchRankingOptions(cuda_graphs=True))
    with pytest.raises(InvalidInputError, match="torch_cuda_graphs must be 'true' or 'false'"):
        TorchRankingOptions.from_parameters({"torch_cuda_graphs": "yes"})
    assert TorchRankingOptions.from_parameters({"torch_dtype": "Float16", "torch_compile": "true"}) == \
        TorchRankingOptions(dtype="float16", compile=True)
    with pytest.raises(InvalidInputError, match="ranking backend must be auto, onnx or torch"):
        RankingStage(artifacts / "ranking" / "dlrm.onnx", setup[0], backend="tensorrt")
    ranker = TorchRanker(model, "cpu")
    with pytest.raises(InvalidInputError, match="missing inputs"):
        ranker.run({"user_row": np.zeros(3, np.int64)})
    assert [bucket(n, 256) for n in (1, 256, 257, 1000, 32_000)] == [256, 256, 512, 1024, 32768]
