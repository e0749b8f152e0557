"""Evaluated == served: the lists `cascade evaluate` scores for the served pipeline (the `served`
method of workflows/evaluate_methods.py, InProcessRecommender.recommend_many over the export) equal,
item for item, what the running tritonserver answers for the same export at explore = 0."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cascade.client import RecommendClient

pytestmark = pytest.mark.integration

N_USERS = 30
K = 100


def test_evaluated_lists_equal_the_served_answers(recommend_server) -> None:
    from cascade.workflows.baselines import Catalog, read_interactions, seen_and_relevant
    from cascade.workflows.dataset import load_dataset
    from cascade.workflows.evaluate_methods import EvaluationContext, build_methods

    data = recommend_server.data_dir
    paths, info = load_dataset(data)
    train = read_interactions(paths.train)
    users, seen, _ = seen_and_relevant(train, pd.read_parquet(paths.test))  # the users evaluate scores
    pick = np.sort(np.random.default_rng(0).choice(len(users), size=N_USERS, replace=False))
    users = users[pick]
    ctx = EvaluationContext(data=data, info=info, train=train, catalog=Catalog.from_dataset(data),
                            export_loader=lambda: recommend_server.export_root)
    (served_method,) = build_methods(["served"], ctx, explicit=True)
    evaluated = served_method.recommend(users, K, [seen[i] for i in pick])  # what evaluate() scores
    assert evaluated.shape == (N_USERS, K)
    with RecommendClient(recommend_server.grpc_url) as client:
        for user, row in zip(users, evaluated):
            answer = client.recommend(int(user), k=K, explore=0.0)
            assert answer.item_ids == row[row >= 0].tolist(), f"user {user}"
