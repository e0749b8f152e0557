"""The ``recommend`` wire contract as seen by a load generator: request encoding for gRPC
(tritonclient) and HTTP (KServe v2 JSON), and response checks.

A response passes when it has 1..top_k item ids, as many scores, and ``degraded`` is true for
unknown users (they must get the cold-start answer, flagged).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from loadtests.sampling import RecommendRequest

MODEL_NAME = "recommend"
OUTPUT_NAMES = ("item_ids", "scores", "model_version", "degraded", "seed_used")


class ResponseCheckError(AssertionError):
    """A response broke the wire contract; the message says how."""


@dataclass(frozen=True)
class Answer:
    item_ids: np.ndarray
    scores: np.ndarray
    degraded: bool


def grpc_inputs(req: RecommendRequest) -> list[Any]:
    """tritonclient.grpc InferInput list for ``req``."""
    import tritonclient.grpc as grpcclient

    return _inputs(grpcclient, req)


def http_client_inputs(req: RecommendRequest) -> list[Any]:
    """tritonclient.http InferInput list for ``req``."""
    import tritonclient.http as httpclient

    return _inputs(httpclient, req)


def _inputs(module: Any, req: RecommendRequest) -> list[Any]:
    arrays: list[tuple[str, str, np.ndarray]] = [
        ("user_id", "INT64", np.array([req.user_id], dtype=np.int64)),
        ("top_k", "INT32", np.array([req.top_k], dtype=np.int32)),
        ("exclude_item_ids", "INT64", np.asarray(req.exclude_item_ids, dtype=np.int64)),
        ("explore", "FP32", np.array([req.explore], dtype=np.float32)),
    ]
    if req.seed is not None:
        arrays.append(("seed", "INT64", np.array([req.seed], dtype=np.int64)))
    inputs = []
    for name, dtype, value in arrays:
        tensor = module.InferInput(name, list(value.shape), dtype)
        tensor.set_data_from_numpy(value)
        inputs.append(tensor)
    return inputs


def grpc_outputs() -> list[Any]:
    import tritonclient.grpc as grpcclient

    return [grpcclient.InferRequestedOutput(name) for name in ("item_ids", "scores", "degraded")]


def http_payload(req: RecommendRequest) -> dict[str, Any]:
    """KServe v2 JSON body for ``POST /v2/models/recommend/infer``."""
    exclude = [int(x) for x in req.exclude_item_ids]
    inputs: list[dict[str, Any]] = [
        {"name": "user_id", "shape": [1], "datatype": "INT64", "data": [req.user_id]},
        {"name": "top_k", "shape": [1], "datatype": "INT32", "data": [req.top_k]},
        {"name": "exclude_item_ids", "shape": [len(exclude)], "datatype": "INT64", "data": exclude},
        {"name": "explore", "shape": [1], "datatype": "FP32", "data": [req.explore]},
    ]
    if req.seed is not None:
        inputs.append({"name": "seed", "shape": [1], "datatype": "INT64", "data": [req.seed]})
    return {"inputs": inputs,
            "outputs": [{"name": n} for n in ("item_ids", "scores", "degraded")]}


def answer_from_json(body: dict[str, Any]) -> Answer:
    """Decode the KServe v2 JSON response body (raises ResponseCheckError when malformed)."""
    try:
        outputs = {out["name"]: out for out in body["outputs"]}
        return Answer(
            item_ids=np.asarray(outputs["item_ids"]["data"], dtype=np.int64),
            scores=np.asarray(outputs["scores"]["data"], dtype=np.float32),
            degraded=bool(outputs["degraded"]["data"][0]),
        )
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise ResponseCheckError(f"malformed response body: {exc!r}: {str(body)[:200]}") from None


def answer_from_result(result: Any) -> Answer:
    """Decode a tritonclient InferResult."""
    item_ids, scores, degraded = (result.as_numpy(n) for n in ("item_ids", "scores", "degraded"))
    if item_ids is None or scores is None or degraded is None:
        raise ResponseCheckError("response lacks item_ids, scores or degraded")
    return Answer(np.asarray(item_ids).ravel(), np.asarray(scores).ravel(),
                  bool(np.asarray(degraded).ravel()[0]))


def check_answer(req: RecommendRequest, answer: Answer) -> None:
    """Raise ResponseCheckError when ``answer`` breaks the contract for ``req``."""
    n = answer.item_ids.size
    if not 1 <= n <= req.top_k:
        raise ResponseCheckError(f"user {req.user_id}: got {n} item_ids, expected 1..{req.top_k}")
    if answer.scores.size != n:
        raise ResponseCheckError(f"user {req.user_id}: {answer.scores.size} scores for {n} item_ids")
    if not req.known and not answer.degraded:
        raise ResponseCheckError(f"unknown user {req.user_id}: expected degraded=True")
    if req.exclude_item_ids.size and np.isin(answer.item_ids, req.exclude_item_ids).any():
        raise ResponseCheckError(f"user {req.user_id}: answer contains an excluded item id")
