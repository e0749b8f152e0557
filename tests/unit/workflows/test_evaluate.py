"""evaluate(): the three report files, their structure, sampling and the CLI, on tiny datasets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from cascade.errors import InvalidInputError, NotFoundError
from cascade.workflows.baselines import ALSParams, ALSRecommender, Catalog, PopularityRecommender
from cascade.workflows.dataset import DatasetInfo, DatasetWriter
from cascade.workflows.evaluate import evaluate, parse_ks
from cascade.workflows.evaluate_cli import evaluate as evaluate_command
from cascade.workflows.split import split_interactions


def write_toy_dataset(root: Path, n_users: int = 120, n_items: int = 60, per_user: int = 15, seed: int = 0) -> Path:
    """Canonical dataset folder; users in 3 clusters that mostly pick their cluster's items."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(n_users):
        pool = np.arange((user % 3) * 20, (user % 3) * 20 + 20)
        items = np.unique(np.concatenate([rng.choice(pool, 12, replace=False), rng.choice(n_items, 3, replace=False)]))
        for t, item in enumerate(rng.permutation(items)):
            rows.append((500 + user, 9000 + int(item), 1_700_000_000 + 60 * t, 1.0))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "weight"]).astype(
        {"weight": np.float32}
    )
    train, test = split_interactions(frame, 0.2)
    target = root / "toy"
    with DatasetWriter(target) as writer:
        pd.DataFrame({"user_id": np.arange(500, 500 + n_users, dtype=np.int64)}).to_parquet(writer.paths.users)
        pd.DataFrame({"item_id": np.arange(9000, 9000 + n_items, dtype=np.int64), "available": True}).to_parquet(
            writer.paths.items
        )
        train.to_parquet(writer.paths.train)
        test.to_parquet(writer.paths.test)
        writer.commit(DatasetInfo(
            name="toy", source="import", n_users=n_users, n_items=n_items, n_train=len(train), n_test=len(test),
            test_fraction=0.2, time_range=(int(frame.timestamp.min()), int(frame.timestamp.max())),
            user_columns=[], item_columns=[],
        ))
    return target


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    return write_toy_dataset(tmp_path_factory.mktemp("data"))


def baselines(data: Path) -> list:
    catalog = Catalog.from_dataset(data)
    train = pd.read_parquet(data / "train.parquet")
    return [
        PopularityRecommender.fit(catalog, train),
        ALSRecommender(catalog, ALSParams(factors=8, iterations=8), num_threads=1).fit(train),
    ]


def test_evaluate_writes_three_files(toy: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    report = evaluate(toy, baselines(toy), ks=(5, 10), out_dir=out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "report.md", "report.png"]

    payload = json.loads((out / "report.json").read_text())
    assert payload["ks"] == [5, 10]
    assert payload["dataset"]["name"] == "toy" and len(payload["dataset"]["content_hash"]) == 64
    assert payload["sampled"] is False and payload["n_users"] == payload["n_eligible_users"] > 0
    assert [m["name"] for m in payload["methods"]] == ["popularity", "als"]
    for method in payload["methods"]:
        assert set(method["metrics"]) == {f"{m}@{k}" for k in (5, 10) for m in
                                          ("recall", "precision", "ndcg", "map", "hit_rate")}
        assert method["seen_leaks"] == 0
        assert all(0.0 <= v <= 1.0 for v in method["metrics"].values())
    assert "recall@K" in payload["definitions"]

    markdown = (out / "report.md").read_text()
    assert "| method | recall@5 | precision@5 | ndcg@5 | map@5 | hit_rate@5 |" in markdown
    assert "| popularity |" in markdown and "| als |" in markdown
    assert "## Definitions" in markdown and "content hash" in markdown and "temporal" in markdown
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the clustered structure is learnable: ALS beats popularity
    als, pop = report.methods[1].metrics, report.methods[0].metrics
    assert als["ndcg@10"] > pop["ndcg@10"]


def test_sample_is_seeded_and_reported(toy: Path) -> None:
    recs = baselines(toy)[:1]
    a = evaluate(toy, recs, ks=(10,), max_users=30, seed=3, progress=False)
    b = evaluate(toy, recs, ks=(10,), max_users=30, seed=3, progress=False)
    assert a.sampled and a.n_users == 30 and a.n_eligible_users > 30
    assert a.methods[0].metrics == b.methods[0].metrics
    assert "30 of" in a.to_markdown() and "seed 3" in a.to_markdown()


class LeakyRecommender:
    """Returns each user's own seen items first: the report must count them."""

    name = "leaky"

    def recommend(self, user_ids: np.ndarray, k: int, exclude: list[np.ndarray]) -> np.ndarray:
        out = np.full((len(user_ids), k), -1, dtype=np.int64)
        for i, seen in enumerate(exclude):
            out[i, : min(k, len(seen))] = seen[:k]
        return out


class BadShape:
    name = "bad"

    def recommend(self, user_ids, k, exclude):
        return np.zeros((len(user_ids), k + 1), dtype=np.int64)


def test_leaks_counted_and_bad_output_rejected(toy: Path) -> None:
    report = evaluate(toy, [LeakyRecommender()], ks=(10,), progress=False)
    assert report.methods[0].seen_leaks > 0
    assert report.methods[0].metrics["recall@10"] == 0.0  # seen items are never relevant
    with pytest.raises(InvalidInputError, match="expected int64"):
        evaluate(toy, [BadShape()], ks=(10,), progress=False)


def test_parse_ks_and_argument_errors(toy: Path, tmp_path: Path) -> None:
    assert parse_ks("100,10,10") == [10, 100]
    with pytest.raises(InvalidInputError, match="--ks"):
        parse_ks("10,x")
    with pytest.raises(InvalidInputError, match="--ks"):
        parse_ks("0")
    with pytest.raises(InvalidInputError, match="--max-users"):
        evaluate(toy, baselines(toy), max_users=0, progress=False)
    with pytest.raises(NotFoundError, match="dataset.json"):
        evaluate(tmp_path, baselines(toy), progress=False)


def cli() -> typer.Typer:
    app = typer.Typer()
    app.command()(evaluate_command)
    return app


def test_cli_baselines_only(toy: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CASCADE_HOME", str(tmp_path / "home"))
    out = tmp_path / "cli"
    result = CliRunner().invoke(cli(), ["--data", str(toy), "--out", str(out), "--ks", "5,10", "--skip-pipeline"])
    assert result.exit_code == 0, result.output
    assert "popularity" in result.output and "als" in result.output
    report = json.loads((out / "report.json").read_text())
    from cascade.workflows.baselines import default_grid

    n_train = len(pd.read_parquet(toy / "train.parquet"))
    names = [m["name"] for m in report["methods"]]
    assert names[1:3] == ["als-ndcg@10", "als-recall@100"]  # one tuned ALS per objective, one grid
    tuning = report["methods"][1]["details"]["tuning"]
    assert len(tuning["grid"]) == len(default_grid(n_train)) and tuning["best"] is not None
    assert report["methods"][2]["details"]["tuning"]["objective"] == "recall@100"
    assert "tuning grid" in (out / "report.md").read_text()


def test_cli_missing_artifacts_is_a_clear_error(toy: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CASCADE_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(cli(), ["--data", str(toy), "--no-tune-als"])
    assert result.exit_code == 2
    assert "cascade train --data" in result.output
    result = CliRunner().invoke(cli(), ["--data", str(toy), "--ks", "ten", "--skip-pipeline"])
    assert result.exit_code == 2 and "--ks" in result.output


def test_oracle_on_tiny_synthetic(tmp_path: Path) -> None:
    from cascade.workflows.baselines import OracleRecommender
    from cascade.workflows.synthetic import SyntheticConfig, generate

    data = tmp_path / "syn"
    generate(data, SyntheticConfig(n_users=150, n_items=120, n_interactions=4000, n_categories=4, n_brands=8,
                                   chunk_interactions=1000), progress=False)
    report = evaluate(data, [*baselines(data)[:1], OracleRecommender(data)], ks=(10,), progress=False)
    pop, oracle = (m.metrics for m in report.methods)
    assert report.methods[1].seen_leaks == 0
    assert oracle["ndcg@10"] > pop["ndcg@10"]
