"""`cascade recommend` against the running ensemble (the CLI's own path, through gRPC and HTTP)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cascade.cli import app

pytestmark = pytest.mark.integration


def test_recommend_prints_ranked_items(recommend_server):
    user = recommend_server.known_user_ids[5]
    result = CliRunner().invoke(app, ["recommend", "--user", str(user), "--k", "5", "--url", recommend_server.grpc_url])
    assert result.exit_code == 0, result.output
    assert f"user {user}" in result.output
    assert result.output.count("\n") >= 5
    assert "model_version=" in result.output


def test_recommend_over_http(recommend_server):
    user = recommend_server.known_user_ids[6]
    result = CliRunner().invoke(
        app, ["recommend", "--user", str(user), "--k", "3", "--url", recommend_server.http_url, "--protocol", "http"]
    )
    assert result.exit_code == 0, result.output


def test_recommend_bad_k_exits_2_naming_the_field(recommend_server):
    result = CliRunner().invoke(app, ["recommend", "--user", "1", "--k", "0", "--url", recommend_server.grpc_url])
    assert result.exit_code == 2
    assert "top_k" in result.output
