"""Multi-source retrieval on the real tritonserver: the `candidates` model, called over gRPC for a
user, returns the same merged candidate rows, source bitmasks and item-to-item scores as the
in-process stages (UserFeatureStage -> QueryTowerStage -> RetrievalStage.retrieve_sources), and
item-to-item neighbours (trained into the export's artifacts/candidates/) really join the
candidates of users with a history."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.integration

N_USERS = 12


def test_candidates_model_emits_sources_like_the_stages(recommend_server) -> None:
    import tritonclient.grpc as grpcclient

    from cascade.online.candidates import ANN, ITEM2ITEM
    from cascade.online.pipeline import InProcessRecommender

    rec = InProcessRecommender.load(recommend_server.export_root)
    assert rec.retrieval.sources.neighbours is not None  # the export carries artifacts/candidates
    item2item_rows, scored = 0, 0
    client = grpcclient.InferenceServerClient(recommend_server.grpc_url)
    try:
        for user_id in recommend_server.known_user_ids[:N_USERS]:
            user = rec.user.lookup(user_id)
            query = rec.query.query(user.cat, user.cont, user.lists)
            expected = rec.retrieval.retrieve_sources(query, user.cold_start, user.seen_items, np.empty(0, np.int64),
                                                      user.recent_items)
            inputs = []
            for name, value, dtype in (("user_id", np.array([[user_id]], np.int64), "INT64"),
                                       ("top_k", np.array([[10]], np.int32), "INT32"),
                                       ("explore", np.array([[0.0]], np.float32), "FP32")):
                tensor = grpcclient.InferInput(name, list(value.shape), dtype)
                tensor.set_data_from_numpy(value)
                inputs.append(tensor)
            result = client.infer("candidates", inputs)
            assert result.as_numpy("candidate_rows")[0].tolist() == expected.rows.tolist()
            assert result.as_numpy("candidate_source")[0].tolist() == expected.source.tolist()
            assert np.allclose(result.as_numpy("candidate_score")[0], expected.item2item_score, atol=1e-6)
            item2item_rows += int(((expected.source & ITEM2ITEM) > 0).sum())
            scored += int((expected.item2item_score > 0).sum())
            assert ((expected.source & ANN) > 0).any()
    finally:
        client.close()
    assert scored > 0  # the ranker gets item-to-item scores
    if rec.retrieval.sources.mix.item2item > 0:  # the share is tuned at training (0 when it did not help)
        assert item2item_rows > 0
