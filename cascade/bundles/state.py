"""What a running server holds: which bundles are loaded, which is live, previous, since when.

Read from the server itself (repository index + model configs), so any process (the sidecar
after a restart, an operator, CI) recovers the state without a file of its own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cascade.bundles.models import EXPORT_ROOT, INFO_MODEL, LIVE_SINCE, PREVIOUS, split_name
from cascade.bundles.tagging import BUNDLE_PARAMETER, ENSEMBLE
from cascade.errors import NotFoundError, UnavailableError

def admin_headers() -> dict[str, str] | None:
    """gRPC headers for Triton's restricted APIs: the key from CASCADE_TRITON_ADMIN_KEY under
    gRPC's header name (cascade.serving.admin; over gRPC Triton checks
    `triton-grpc-protocol-admin-key`, not `admin-key`). None without a key."""
    from cascade.serving.admin import admin_headers as headers

    return headers("grpc") or None


def connect(url: str) -> Any:
    """A gRPC client of ``url`` (HOST:GRPC_PORT) that answers, else UnavailableError."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    if ":" not in url or url.startswith(("http://", "https://")):
        raise UnavailableError(f"--url {url!r}: expected HOST:GRPC_PORT, e.g. 127.0.0.1:8001")
    client = grpcclient.InferenceServerClient(url)
    try:
        live = client.is_server_live(headers=admin_headers())
    except InferenceServerException as error:
        raise UnavailableError(f"tritonserver at {url} does not answer gRPC: {error.message()}") from None
    if not live:
        raise UnavailableError(f"tritonserver at {url} is not live")
    return client


def parameters(config: dict[str, Any]) -> dict[str, str]:
    return {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}


@dataclass
class BundleInfo:
    bundle_id: str
    models: dict[str, str] = field(default_factory=dict)  # model name -> Triton state
    export_root: str = ""

    @property
    def ready(self) -> bool:
        return bool(self.models) and all(state == "READY" for state in self.models.values())


@dataclass
class ServerState:
    live: str | None
    previous: str | None
    live_since: str | None
    repository: Path | None
    bundles: dict[str, BundleInfo]

    def loaded(self, bundle_id: str) -> bool:
        info = self.bundles.get(bundle_id)
        return info is not None and info.ready

    def to_dict(self) -> dict[str, Any]:
        return {
            "live": self.live, "previous": self.previous, "live_since": self.live_since,
            "repository": str(self.repository) if self.repository else None,
            "bundles": {b: {"ready": i.ready, "models": i.models, "export_root": i.export_root}
                        for b, i in sorted(self.bundles.items())},
        }


def read_state(client: Any) -> ServerState:
    headers = admin_headers()
    index = client.get_model_repository_index(headers=headers, as_json=True).get("models", [])
    states = {m["name"]: m.get("state", "") for m in index}
    bundles: dict[str, BundleInfo] = {}
    for name, state in states.items():
        parts = split_name(name)
        if parts is None or state not in ("READY", "LOADING", "UNLOADING"):
            continue
        bundles.setdefault(parts[1], BundleInfo(parts[1])).models[name] = state
    live = previous = since = None
    if states.get(ENSEMBLE) == "READY":
        params = parameters(client.get_model_config(ENSEMBLE, headers=headers, as_json=True)["config"])
        live, previous, since = params.get(BUNDLE_PARAMETER) or None, params.get(PREVIOUS) or None, params.get(LIVE_SINCE)
    for info in bundles.values():
        pinned = f"{ENSEMBLE}__{info.bundle_id}"
        if info.models.get(pinned) == "READY":
            params = parameters(client.get_model_config(pinned, headers=headers, as_json=True)["config"])
            info.export_root = params.get(EXPORT_ROOT, "")
    repository = None
    if states.get(INFO_MODEL) == "READY":
        params = parameters(client.get_model_config(INFO_MODEL, headers=headers, as_json=True)["config"])
        repository = Path(params["repository"]) if params.get("repository") else None
    return ServerState(live, previous, since, repository, bundles)


def repository_of(state: ServerState, url: str, override: Path | None) -> Path:
    repository = override or state.repository
    if repository is None:
        raise NotFoundError(
            f"the server at {url} does not name its bundle repository (model {INFO_MODEL} is not loaded): "
            "start it with `cascade serve EXPORT` or pass --repository DIR (its --model-repository)"
        )
    if not Path(repository).is_dir():
        raise NotFoundError(f"bundle repository {repository} is not a folder on this machine (pass --repository)")
    return Path(repository)


def wait_drained(client: Any, model: str, quiet_s: float = 1.0, limit_s: float = 30.0) -> float:
    """Wait until ``model`` (a pinned ensemble ``recommend__<bundle>``) has completed no request for
    ``quiet_s``, at most ``limit_s``; returns the seconds waited. The one drain check before a
    bundle's models are unloaded (a superseded bundle in ``cascade rollout``, an experiment's
    treatment at its stop): requests still inside an ensemble (between its steps, or queued in
    router instances of an old config) would otherwise fail with "not ready" (measured with 2
    router instances and a slow treatment). Without statistics there is nothing to wait for."""
    def count() -> float:
        try:
            stats = client.get_inference_statistics(model, headers=admin_headers(), as_json=True)["model_stats"][0]
            inference = stats.get("inference_stats", {})
            return float(sum(int(inference.get(k, {}).get("count", 0)) for k in ("success", "fail")))
        except Exception:  # noqa: BLE001 - no statistics: nothing to wait for
            return -1.0

    started = time.monotonic()
    last, quiet_since = count(), time.monotonic()
    while last >= 0 and time.monotonic() - started < limit_s:
        time.sleep(min(0.2, quiet_s))
        now = count()
        if now != last:
            last, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s:
            break
    return time.monotonic() - started
