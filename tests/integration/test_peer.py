"""The FastAPI peer (benchmarks/peer_fastapi.py), the standing benchmark the ensemble is compared
with, runs as a real uvicorn process over the tiny export and answers exactly what the in-process
pipeline answers; bad input is a 4xx naming the field, never a crash."""

from __future__ import annotations

import http.client
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

pytestmark = pytest.mark.integration


def _post(port: int, body: dict) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/recommend", body=json.dumps(body), headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_peer_answers_like_the_in_process_pipeline(tiny_export, tmp_path) -> None:
    from benchmarks.peer_compare import start_peer, wait_http
    from cascade.online.pipeline import InProcessRecommender
    from cascade.serving.ports import free_ports

    data, export_root = tiny_export
    (port,) = free_ports(1)
    peer = start_peer(export_root, port, tmp_path / "peer.log")
    try:
        wait_http(port, "/health", 180, peer)
        floor = InProcessRecommender.load(export_root)
        import pyarrow.parquet as pq

        users = pq.read_table(data / "users.parquet", columns=["user_id"]).column("user_id").to_pylist()[:5]
        for user in [*users, 987_654_321]:
            status, body = _post(port, {"user_id": user, "top_k": 7})
            want = floor.recommend(user, top_k=7)
            assert status == 200
            assert body["item_ids"] == want.item_ids.tolist() and body["degraded"] == bool(want.degraded)
            assert body["model_version"] == want.model_version
        status, body = _post(port, {"user_id": users[0], "top_k": 100_000})
        assert status == 400 and "top_k" in body["error"]
        status, _ = _post(port, {"top_k": 3})  # user_id missing: FastAPI's own validation
        assert status == 422
    finally:
        peer.terminate()
        peer.wait(timeout=20)
