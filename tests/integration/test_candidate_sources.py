"""Multi-source retrieval on the real tritonserver: the `retrieval` model, called over gRPC with the
tensors `user_features` hands it, returns the same merged candidates, source bitmasks and
item-to-item scores as the in-process RetrievalStage, and item-to-item neighbours (trained into
the export's artifacts/candidates/) really join the candidates of users with a history."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.integration

N_USERS = 12


def test_retrieval_model_emits_sources_like_the_stage(recommend_server) -> None:
    import tritonclient.grpc as grpcclient

    from cascade.online.candidates import ANN, ITEM2ITEM
    from cascade.online.pipeline import InProcessRecommender

    rec = InProcessRecommender.load(recommend_server.export_root)
    assert rec.retrieval.sources.neighbours is not None  # the export carries artifacts/candidates
    users = recommend_server.known_user_ids[:N_USERS]
    item2item_rows = 0
    client = grpcclient.InferenceServerClient(recommend_server.grpc_url)
    try:
        for user_id in users:
            user = rec.user.lookup(user_id)
            query = rec.query.query(user.cat, user.cont, user.lists)
            expected = rec.retrieval.retrieve_sources(query, user.cold_start, user.seen_items, np.empty(0, np.int64),
                                                      user.recent_items)
            tensors = {
                "query": query.astype(np.float32).reshape(1, -1),
                "cold_start": np.array([[user.cold_start]]),
                "seen_items": user.seen_items.reshape(1, -1),
                "recent_items": user.recent_items.reshape(1, -1),
            }
            inputs = []
            for name, value in tensors.items():
                dtype = {np.dtype(np.float32): "FP32", np.dtype(bool): "BOOL"}.get(value.dtype, "INT64")
                tensor = grpcclient.InferInput(name, list(value.shape), dtype)
                tensor.set_data_from_numpy(value)
                inputs.append(tensor)
            result = client.infer("retrieval", inputs)
            assert result.as_numpy("candidate_rows")[0].tolist() == expected.rows.tolist()
            assert result.as_numpy("candidate_source")[0].tolist() == expected.source.tolist()
            assert np.allclose(result.as_numpy("candidate_score")[0], expected.item2item_score)
            item2item_rows += int(((expected.source & ITEM2ITEM) > 0).sum())
            assert ((expected.source & ANN) > 0).any()
    finally:
        client.close()
    assert item2item_rows > 0
