"""`cascade preprocess fit|transform|schema`."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
from typer.testing import CliRunner

from cascade.preprocessing.cli import app

runner = CliRunner()


def test_fit_is_cached_by_input_hash(tiny_dataset: Path, tmp_path: Path):
    out = tmp_path / "wf"
    first = runner.invoke(app, ["fit", "--data", str(tiny_dataset), "--out", str(out), "--quiet"])
    assert first.exit_code == 0, first.output
    assert "item_id" in first.output and (out / "workflow.json").is_file()
    second = runner.invoke(app, ["fit", "--data", str(tiny_dataset), "--out", str(out), "--quiet"])
    assert second.exit_code == 0 and "up to date" in second.output
    forced = runner.invoke(app, ["fit", "--data", str(tiny_dataset), "--out", str(out), "--quiet", "--force"])
    assert forced.exit_code == 0 and "up to date" not in forced.output

    transformed = runner.invoke(app, ["transform", "--workflow", str(out), "--data", str(tiny_dataset),
                                      "--out", str(tmp_path / "t"), "--entity", "item"])
    assert transformed.exit_code == 0, transformed.output
    table = pq.read_table(tmp_path / "t" / "items.parquet")
    assert table.schema.field("genres").type.list_size == 8
    schema = runner.invoke(app, ["schema", "--workflow", str(out)])
    assert json.loads(schema.stdout)["meta"]["train_rows"] == 1500


def test_errors_exit_2_with_message(tmp_path: Path):
    result = runner.invoke(app, ["fit", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "wf")])
    assert result.exit_code == 2
    assert "dataset.json is missing" in result.output
    result = runner.invoke(app, ["schema", "--workflow", str(tmp_path)])
    assert result.exit_code == 2 and "workflow.json is missing" in result.output
