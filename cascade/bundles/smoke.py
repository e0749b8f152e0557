"""The smoke set a rollout sends through a bundle's pinned ensemble before it takes traffic:
the wire contract (ids from the bundle's catalog, no duplicates, finite scores,
``model_version`` naming the bundle) for known and unknown users, and a clear INVALID_ARG for a
bad request."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from cascade.errors import CascadeError, InvalidInputError, RolloutError

SMOKE_K = 10
UNKNOWN_USER = 9_000_000_000_000_000_000  # not a user of any dataset: the cold-start answer


def smoke_users(export_root: Path, n: int = 4) -> list[int]:
    """A few user ids of the bundle's dataset (its Feast user source), plus an unknown user."""
    import pandas as pd

    users: list[int] = []
    for path in sorted((Path(export_root) / "feature_repo").rglob("*user*.parquet"))[:1]:
        ids = pd.read_parquet(path, columns=["user_id"])["user_id"].drop_duplicates()
        users = [int(u) for u in ids.sort_values().iloc[:: max(1, len(ids) // n)][:n]]
    return users + [UNKNOWN_USER]


def smoke(url: str, model: str, bundle_id: str, export_root: Path, users: list[int] | None = None) -> int:
    """Send the smoke set to ``model``; raise RolloutError naming the first broken rule.
    Returns the number of requests sent."""
    from cascade.client import RecommendClient

    catalog = set(np.load(Path(export_root) / "artifacts" / "index" / "item_ids.npy").tolist())
    users = users if users is not None else smoke_users(export_root)
    sent = 0
    with RecommendClient(url, model=model, timeout_s=30.0) as client:
        for user in users:
            try:
                answer = client.recommend(user, k=SMOKE_K)
            except CascadeError as error:
                raise RolloutError(f"smoke request user_id={user} to {model} failed: {error.message}") from None
            sent += 1
            problem = _contract_problem(answer, bundle_id, catalog)
            if problem:
                raise RolloutError(f"smoke request user_id={user} to {model}: {problem}")
        try:
            client.recommend(users[0], k=0)
            raise RolloutError(f"smoke request top_k=0 to {model} was answered; expected INVALID_ARG")
        except InvalidInputError:
            sent += 1
        except CascadeError as error:
            raise RolloutError(f"smoke request top_k=0 to {model}: expected INVALID_ARG, got {error.message}") from None
    return sent


def _contract_problem(answer, bundle_id: str, catalog: set[int]) -> str | None:
    if answer.model_version.split("+", 1)[0] != bundle_id:
        return f"model_version {answer.model_version!r} does not name bundle {bundle_id!r}"
    if not 0 < len(answer.item_ids) <= SMOKE_K or len(answer.scores) != len(answer.item_ids):
        return f"{len(answer.item_ids)} item_ids / {len(answer.scores)} scores for top_k={SMOKE_K}"
    if len(set(answer.item_ids)) != len(answer.item_ids):
        return "duplicate item_ids"
    unknown = [i for i in answer.item_ids if i not in catalog]
    if unknown:
        return f"item_ids {unknown[:3]} are not in the bundle's catalog"
    if not all(math.isfinite(s) for s in answer.scores):
        return "non-finite scores"
    return None
