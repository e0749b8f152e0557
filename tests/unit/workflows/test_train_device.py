"""`cascade train --device`: the device plumbing of both trainers (models, batches, losses and the
evaluation on the chosen device; results back on the CPU for saving and ONNX export), seeded runs
that repeat exactly, and a clear refusal of --device cuda on a machine without a usable GPU (this
one). GPU-vs-CPU agreement of the same seeded steps is measured by benchmarks/gpu_check.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from cascade.errors import InvalidInputError, UnavailableError
from cascade.workflows.train_retrieval import training_device


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory):
    from cascade.workflows.artifacts import fit_workflow
    from cascade.workflows.synthetic import SyntheticConfig, generate
    from cascade.workflows.training_data import prepare

    root = tmp_path_factory.mktemp("device")
    generate(root / "data", SyntheticConfig(n_users=60, n_items=40, n_interactions=1200, n_categories=4, n_brands=8,
                                            seed=5), name="device", progress=False)
    workflow = fit_workflow(root / "data", root / "workflow", progress=False)
    return prepare(workflow, root / "data", rank_holdout=3, rank_fraction=0.1)


def _configs(device: str):
    from cascade.workflows.train_ranking import RankingTrainConfig
    from cascade.workflows.train_retrieval import RetrievalTrainConfig

    r = RetrievalTrainConfig(epochs=1, min_steps_per_epoch=5, progress=False, threads=1, device=device, eval_k=10,
                             eval_examples=100)
    r.model.dim = r.model.item_embedding_dim = 16
    r.model.hidden = [32]
    k = RankingTrainConfig(epochs=1, min_steps_per_epoch=5, progress=False, threads=1, device=device, eval_examples=100,
                           hard_pool=20, n_candidates=20, list_negatives=8)
    return r, k


def _train(prepared):
    from cascade.workflows.train_ranking import train_dlrm
    from cascade.workflows.train_retrieval import train_two_tower

    r, k = _configs("cpu")
    retrieval = train_two_tower(prepared, r)
    ranking = train_dlrm(prepared, retrieval.model, k)
    return retrieval, ranking


def test_seeded_training_repeats_exactly_and_ends_on_the_cpu(prepared) -> None:
    first, second = _train(prepared), _train(prepared)
    for a, b in zip(first, second):
        assert a.epochs == b.epochs
        sa, sb = a.model.state_dict(), b.model.state_dict()
        assert sa.keys() == sb.keys()
        for name in sa:
            assert torch.equal(sa[name], sb[name]), name
            assert sa[name].device.type == "cpu", name


def test_cuda_without_a_gpu_fails_before_any_work(prepared) -> None:
    if torch.cuda.is_available():  # pragma: no cover - a GPU machine trains instead
        pytest.skip("a GPU is present")
    from cascade.workflows.train_ranking import train_dlrm
    from cascade.workflows.train_retrieval import train_two_tower

    r, k = _configs("cuda")
    with pytest.raises(UnavailableError, match=r"--device cuda: torch .* sees 0 CUDA device\(s\).*train with --device cpu"):
        train_two_tower(prepared, r)
    with pytest.raises(UnavailableError, match="--device cuda"):
        train_dlrm(prepared, None, k)
    with pytest.raises(InvalidInputError, match="--device must be 'cpu' or 'cuda'"):
        training_device("tpu")
    assert training_device("cpu") == torch.device("cpu")


def test_cli_refuses_cuda_without_a_gpu(tmp_path: Path) -> None:
    if torch.cuda.is_available():  # pragma: no cover
        pytest.skip("a GPU is present")
    from cascade.cli import app

    for args in (["train"], ["train", "retrieval"], ["train", "ranking"]):
        result = CliRunner().invoke(app, [*args, "--data", str(tmp_path), "--device", "cuda", "--no-progress"])
        assert result.exit_code == 2, (args, result.output)
        assert "--device cuda" in result.output and "CUDA device" in result.output, result.output
