"""Typed Python client for the ``recommend`` ensemble (gRPC by default, HTTP too)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

from cascade.errors import CascadeError, InvalidInputError, NotFoundError, UnavailableError

MODEL = "recommend"
OUTPUTS = ("item_ids", "scores", "model_version", "degraded", "seed_used", "variant")


@dataclass(frozen=True)
class Recommendations:
    item_ids: list[int]
    scores: list[float]
    model_version: str
    degraded: bool
    seed_used: int
    variant: str = "control"  # which experiment variant answered ("control" when no experiment runs)


def _error(exc: Exception) -> CascadeError:
    status = str(getattr(exc, "status", lambda: "")() or "")
    message = str(getattr(exc, "message", lambda: str(exc))() or exc)
    if "INVALID" in status or status == "400":
        return InvalidInputError(message)
    if "NOT_FOUND" in status or status == "404":
        return NotFoundError(message)
    return UnavailableError(message)


def _is_timeout(exc: BaseException) -> bool:
    import socket

    if isinstance(exc, (TimeoutError, socket.timeout)):
        return True
    try:  # geventhttpclient's read/connect timeouts are gevent's Timeout
        from gevent import Timeout
    except ImportError:  # pragma: no cover - gevent comes with tritonclient[http]
        return False
    return isinstance(exc, Timeout)


class TritonClient:
    """A connection to one Triton server and the inference call every cascade client makes:
    gRPC or HTTP, ``timeout_s`` on every call (the gRPC deadline, the HTTP client's connection and
    network timeouts), server errors mapped to :mod:`cascade.errors` (INVALID_ARGUMENT/400 ->
    InvalidInputError, NOT_FOUND/404 -> NotFoundError, the rest and timeouts -> UnavailableError)."""

    def __init__(self, url: str = "127.0.0.1:8001", protocol: Literal["grpc", "http"] = "grpc",
                 timeout_s: float = 10.0) -> None:
        self.protocol = protocol
        self.timeout_s = timeout_s
        if protocol == "grpc":
            import tritonclient.grpc as module
        elif protocol == "http":
            import tritonclient.http as module
        else:
            raise InvalidInputError(f"protocol must be 'grpc' or 'http', got {protocol!r}")
        if not timeout_s > 0:
            raise InvalidInputError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
        self._module = module
        if protocol == "http":
            self._client = module.InferenceServerClient(
                url=url, connection_timeout=timeout_s, network_timeout=timeout_s
            )
        else:
            self._client = module.InferenceServerClient(url=url)

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def _input(self, name: str, array: np.ndarray, datatype: str):
        tensor = self._module.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        return tensor

    def _infer(self, model: str, inputs: list, outputs: Sequence[str] | None = None):
        requested = [self._module.InferRequestedOutput(n) for n in outputs] if outputs else None
        try:
            if self.protocol == "grpc":
                return self._client.infer(model, inputs, outputs=requested, client_timeout=self.timeout_s)
            return self._client.infer(model, inputs, outputs=requested)
        except Exception as exc:  # tritonclient raises InferenceServerException
            if exc.__class__.__name__ == "InferenceServerException":
                raise _error(exc) from exc
            if _is_timeout(exc):  # the HTTP client raises the socket's timeout as is
                raise UnavailableError(
                    f"{model} timed out after timeout_s={self.timeout_s} s ({type(exc).__name__})"
                ) from exc
            raise


class RecommendClient(TritonClient):
    """``RecommendClient("127.0.0.1:8001").recommend(42, k=10)``.

    ``timeout_s`` bounds every call on both protocols: the gRPC deadline, and the HTTP client's
    connection and network timeouts. A call that runs out of time raises UnavailableError."""

    def __init__(self, url: str = "127.0.0.1:8001", protocol: Literal["grpc", "http"] = "grpc",
                 timeout_s: float = 10.0, model: str = MODEL) -> None:
        super().__init__(url, protocol, timeout_s)
        self.model = model  # `recommend`, or a bundle's pinned copy `recommend__<bundle>`
        self._outputs: tuple[str, ...] | None = None  # OUTPUTS the served model has (read once)

    def recommend(self, user_id: int, k: int = 10, exclude: Sequence[int] = (), explore: float = 0.0,
                  seed: int | None = None, variant: str | None = None) -> Recommendations:
        """``variant`` forces an experiment variant ("control" / "treatment", for QA); None = by user hash."""
        inputs = [
            self._input("user_id", np.array([user_id], dtype=np.int64), "INT64"),
            self._input("top_k", np.array([k], dtype=np.int32), "INT32"),
            self._input("exclude_item_ids", np.asarray(exclude, dtype=np.int64).reshape(-1), "INT64"),
            self._input("explore", np.array([explore], dtype=np.float32), "FP32"),
        ]
        if seed is not None:
            inputs.append(self._input("seed", np.array([seed], dtype=np.int64), "INT64"))
        if variant is not None:
            inputs.append(self._input("variant", np.array([variant.encode()], dtype=object), "BYTES"))
        result = self._infer(self.model, inputs, self._output_names())
        version = result.as_numpy("model_version").reshape(-1)[0]
        return Recommendations(
            item_ids=result.as_numpy("item_ids").astype(np.int64).tolist(),
            scores=result.as_numpy("scores").astype(np.float32).tolist(),
            model_version=version.decode() if isinstance(version, bytes) else str(version),
            degraded=bool(result.as_numpy("degraded").reshape(-1)[0]),
            seed_used=int(result.as_numpy("seed_used").reshape(-1)[0]),
            variant=_text(result.as_numpy("variant") if "variant" in self._output_names() else None),
        )

    def _output_names(self) -> tuple[str, ...]:
        """OUTPUTS, without ``variant`` for a bundle exported before it existed (read from the
        model's metadata once; metadata stays open under the admin key)."""
        if self._outputs is None:
            try:
                if self.protocol == "grpc":
                    meta = self._client.get_model_metadata(self.model, as_json=True, client_timeout=self.timeout_s)
                else:
                    meta = self._client.get_model_metadata(self.model)
                names = {o["name"] for o in meta.get("outputs", [])}
            except Exception:  # noqa: BLE001 - the inference call reports an unreachable server
                return OUTPUTS
            self._outputs = tuple(n for n in OUTPUTS if n in names or n != "variant")
        return self._outputs


def _text(array: np.ndarray | None) -> str:
    if array is None or array.size == 0:
        return "control"
    value = array.reshape(-1)[0]
    return value.decode() if isinstance(value, bytes) else str(value)
