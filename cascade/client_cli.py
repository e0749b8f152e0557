"""``cascade recommend``: ask a running server for one user's recommendations."""

from __future__ import annotations

from typing import List, Optional

import typer

from cascade.console import cli_errors, console, recommendation_table


def recommend(
    user: int = typer.Option(..., "--user", help="Raw user id."),
    k: int = typer.Option(10, "--k", help="How many items (top_k)."),
    exclude: Optional[List[int]] = typer.Option(None, "--exclude", help="Raw item id to leave out (repeatable)."),
    explore: float = typer.Option(0.0, help="Softmax-sampling temperature; 0 = deterministic ranking."),
    seed: Optional[int] = typer.Option(None, help="Replay an exploration answer with its seed."),
    url: str = typer.Option("127.0.0.1:8001", help="Server address (host:port)."),
    protocol: str = typer.Option("grpc", help="grpc or http (use port 8000 for http)."),
) -> None:
    """Recommend items for one user through the running `recommend` ensemble."""
    from cascade.client import RecommendClient

    with cli_errors():
        with RecommendClient(url, protocol=protocol) as client:  # type: ignore[arg-type]
            answer = client.recommend(user, k=k, exclude=exclude or (), explore=explore, seed=seed)
    console.print(recommendation_table(answer, f"user {user}"))
    console.print(f"model_version={answer.model_version} seed_used={answer.seed_used}")
