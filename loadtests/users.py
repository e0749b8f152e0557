"""Locust users for the ``recommend`` ensemble.

- :class:`GrpcRecommendUser`: tritonclient.grpc (gevent-cooperative once
  ``grpc.experimental.gevent.init_gevent()`` ran; the locustfile does that first). Each request is
  reported with ``events.request.fire(request_type="grpc", name="recommend", ...)``; a Triton error
  or a broken contract is the failure.
- :class:`HttpRecommendUser`: FastHttpUser posting the KServe v2 JSON body to
  ``{host}/v2/models/recommend/infer`` (request type "POST", name "recommend").

Options come from the locustfile's custom arguments (``--grpc-url``, ``--user-ids`` ...), see
:func:`add_arguments`. Request counters (known/unknown/degraded) are logged at test stop.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import weakref
from collections import Counter
from typing import Any

from locust import FastHttpUser, User, task

from loadtests.sampling import RequestMix, RequestSampler, load_ids
from loadtests.wire import (
    MODEL_NAME,
    ResponseCheckError,
    answer_from_json,
    answer_from_result,
    check_answer,
    grpc_inputs,
    grpc_outputs,
    http_payload,
)

logger = logging.getLogger("cascade.loadtest")

COUNTERS: Counter[str] = Counter()
_OPEN_CLIENTS: "weakref.WeakSet[Any]" = weakref.WeakSet()
_IDS_CACHE: dict[tuple[str, str], Any] = {}
_USER_SEQ = iter(range(1 << 62))
_LOCK = threading.Lock()


class TritonRequestError(Exception):
    """Triton answered with an error; the message is its status and text."""


def add_arguments(parser: Any) -> None:
    """Custom Locust options (each also readable from the named env var)."""
    group = parser.add_argument_group("cascade")
    group.add_argument("--grpc-url", default="127.0.0.1:8001", env_var="CASCADE_GRPC_URL",
                       help="host:port of Triton's gRPC endpoint")
    group.add_argument("--user-ids", default="", env_var="CASCADE_USER_IDS",
                       help="dataset folder (users.parquet) or file of known user ids")
    group.add_argument("--item-ids", default="", env_var="CASCADE_ITEM_IDS",
                       help="dataset folder (items.parquet) or file of item ids for exclude lists "
                            "(default: the --user-ids folder when it is a dataset)")
    group.add_argument("--unknown-share", type=float, default=0.05, env_var="CASCADE_UNKNOWN_SHARE",
                       help="share of requests for users absent from the dataset")
    group.add_argument("--exclude-share", type=float, default=0.1, env_var="CASCADE_EXCLUDE_SHARE",
                       help="share of requests that send exclude_item_ids")
    group.add_argument("--explore-share", type=float, default=0.1, env_var="CASCADE_EXPLORE_SHARE",
                       help="share of requests with explore > 0 (and a seed)")
    group.add_argument("--top-k", type=int, default=10, env_var="CASCADE_TOP_K")
    group.add_argument("--zipf-exponent", type=float, default=1.1, env_var="CASCADE_ZIPF_EXPONENT")
    group.add_argument("--sample-seed", type=int, default=0, env_var="CASCADE_SAMPLE_SEED",
                       help="base seed; user i of worker w uses seed (base, w, i)")
    group.add_argument("--think-ms", type=float, default=0.0, env_var="CASCADE_THINK_MS",
                       help="mean think time between requests of one user (uniform 0..2x)")


def _ids(path: str, entity: str) -> Any:
    key = (path, entity)
    with _LOCK:
        if key not in _IDS_CACHE:
            _IDS_CACHE[key] = load_ids(path, entity)
        return _IDS_CACHE[key]


def make_sampler(options: Any, worker_index: int = 0) -> RequestSampler:
    """A per-user RequestSampler from the parsed Locust options; its seed is
    (``--sample-seed``, worker index, n-th user of this process), so runs repeat."""
    users_src = options.user_ids
    if not users_src:
        raise RuntimeError("no known user ids: pass --user-ids DIR|FILE (or CASCADE_USER_IDS)")
    items_src = options.item_ids or (users_src if os.path.isdir(users_src) else "")
    items = _ids(items_src, "item") if items_src else None
    mix = RequestMix(top_k=options.top_k, unknown_share=options.unknown_share,
                     exclude_share=options.exclude_share, explore_share=options.explore_share,
                     zipf_exponent=options.zipf_exponent)
    with _LOCK:
        seq = next(_USER_SEQ)
    seed = (int(options.sample_seed) * 1_000_003 + worker_index * 65_537 + seq) & 0x7FFFFFFF
    return RequestSampler(_ids(users_src, "user"), mix, items, seed=seed)


def _worker_index(user: User) -> int:
    return int(getattr(user.environment.runner, "worker_index", 0) or 0)


def _think(user: User) -> float:
    mean = float(getattr(user.environment.parsed_options, "think_ms", 0.0) or 0.0)
    return random.uniform(0.0, 2.0 * mean) / 1000.0


def _count(known: bool, degraded: bool | None, ok: bool) -> None:
    COUNTERS["known" if known else "unknown"] += 1
    if degraded:
        COUNTERS["degraded"] += 1
    if not ok:
        COUNTERS["failed"] += 1


def close_open_clients() -> None:
    """Close every tritonclient still open (safety net at test stop)."""
    for client in list(_OPEN_CLIENTS):
        try:
            client.close()
        except Exception:  # noqa: BLE001 - closing best effort
            pass
        _OPEN_CLIENTS.discard(client)


def log_counters() -> None:
    logger.info("cascade-loadtest counters: %s", dict(sorted(COUNTERS.items())))
    print(f"cascade-loadtest counters: {dict(sorted(COUNTERS.items()))}", flush=True)


class GrpcRecommendUser(User):
    """Closed-loop client calling ``recommend`` over gRPC with tritonclient."""

    weight = 3

    def wait_time(self) -> float:
        return _think(self)

    def on_start(self) -> None:
        import tritonclient.grpc as grpcclient

        self.sampler = make_sampler(self.environment.parsed_options, _worker_index(self))
        self.client = grpcclient.InferenceServerClient(url=self.environment.parsed_options.grpc_url)
        _OPEN_CLIENTS.add(self.client)
        self.outputs = grpc_outputs()

    def on_stop(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            client.close()  # without this Locust hangs at exit after writing its CSVs
            _OPEN_CLIENTS.discard(client)
            self.client = None

    @task
    def recommend(self) -> None:
        from tritonclient.utils import InferenceServerException

        req = self.sampler.next()
        inputs = grpc_inputs(req)
        exception: BaseException | None = None
        length = 0
        degraded = None
        start = time.perf_counter()
        try:
            result = self.client.infer(MODEL_NAME, inputs, outputs=self.outputs)
            elapsed_ms = (time.perf_counter() - start) * 1000.0
            length = result.get_response().ByteSize()
            answer = answer_from_result(result)
            degraded = answer.degraded
            check_answer(req, answer)
        except InferenceServerException as exc:
            elapsed_ms = (time.perf_counter() - start) * 1000.0
            exception = TritonRequestError(f"{exc.status()}: {exc.message()}")
        except ResponseCheckError as exc:
            exception = exc
        except Exception as exc:  # noqa: BLE001 - any client error is a failed request
            elapsed_ms = (time.perf_counter() - start) * 1000.0
            exception = exc
        _count(req.known, degraded, exception is None)
        self.environment.events.request.fire(
            request_type="grpc", name=MODEL_NAME, response_time=elapsed_ms,
            response_length=length, exception=exception,
            context={"user_id": req.user_id, "known": req.known},
        )


class HttpRecommendUser(FastHttpUser):
    """Closed-loop client posting KServe v2 JSON to ``/v2/models/recommend/infer``."""

    weight = 1
    host = "http://127.0.0.1:8000"

    def wait_time(self) -> float:
        return _think(self)

    def on_start(self) -> None:
        self.sampler = make_sampler(self.environment.parsed_options, _worker_index(self))

    @task
    def recommend(self) -> None:
        req = self.sampler.next()
        degraded = None
        with self.client.post(f"/v2/models/{MODEL_NAME}/infer", json=http_payload(req),
                              name=MODEL_NAME, catch_response=True) as resp:
            ok = False
            try:
                body = resp.json()
            except Exception:  # noqa: BLE001 - non-JSON body: report the raw text
                body = None
            if resp.status_code != 200:
                error = body.get("error") if isinstance(body, dict) else (resp.text or "")[:200]
                resp.failure(f"HTTP {resp.status_code}: {error}")
            elif not isinstance(body, dict):
                resp.failure("response body is not JSON")
            else:
                try:
                    answer = answer_from_json(body)
                    degraded = answer.degraded
                    check_answer(req, answer)
                    ok = True
                except ResponseCheckError as exc:
                    resp.failure(str(exc))
        _count(req.known, degraded, ok)
