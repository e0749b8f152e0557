"""Rollout and rollback of bundles in one running tritonserver (explicit model control).

rollout(EXPORT): lock -> verify (manifest sha256, code version, optional signature) -> write and
load the bundle's stage models beside the live ones -> load its pinned ensemble
``recommend__<B>`` -> smoke through it -> switch ``recommend`` in one load -> unload the bundles
that are now neither live nor previous, once drained (grace period). Any failure before the switch
unloads what was loaded and leaves ``recommend`` untouched; the error names the step and the live
bundle. At most three bundles are loaded during a rollout, two after it.
rollback(): switch ``recommend`` back to the previous bundle, still loaded (<= 1 s).
"""

from __future__ import annotations

import logging
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cascade.bundles.lock import rollout_lock
from cascade.bundles.manifest import verify_bundle
from cascade.bundles.models import (
    INFO_MODEL, LIVE_SINCE, PREVIOUS, BundleModels, ModelFolder, config_json, info_model_folder, model_name,
    now_iso, write_folder,
)
from cascade.bundles.smoke import smoke
from cascade.bundles.state import ServerState, admin_headers, connect, read_state, repository_of, wait_drained
from cascade.bundles.tagging import BUNDLE_PARAMETER, ENSEMBLE
from cascade.errors import CascadeError, NotFoundError, RolloutError

LOG = logging.getLogger(__name__)
DEFAULT_GRACE_S = 30.0


@dataclass
class RolloutResult:
    bundle_id: str
    previous: str | None
    reused: bool = False  # the bundle was still loaded (e.g. the previous one): nothing to load
    already_live: bool = False
    unloaded: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # phase -> seconds
    smoke_requests: int = 0
    extras_failed: list[str] = field(default_factory=list)  # models outside the ensemble that did not load


def _error_text(error: BaseException) -> str:
    message = getattr(error, "message", None)
    text = message() if callable(message) else message
    return str(text or error)


def rollout(
    export_root: Path,
    url: str,
    *,
    repository: Path | None = None,
    grace_s: float = DEFAULT_GRACE_S,
    public_key: Path | None = None,
    smoke_users: list[int] | None = None,
    lock_timeout_s: float = 300.0,
    lock_dir: Path | None = None,
) -> RolloutResult:
    export_root = Path(export_root).resolve()
    seconds: dict[str, float] = {}
    started = time.monotonic()
    with rollout_lock(url, lock_timeout_s, lock_dir):
        seconds["lock"] = time.monotonic() - started
        mark = time.monotonic()
        manifest = verify_bundle(export_root, public_key=public_key)
        bundle = manifest.bundle_id
        models = BundleModels.from_export(export_root, bundle)
        seconds["verify"] = time.monotonic() - mark
        client = connect(url)
        _refuse_during_experiment(client, url)
        state = read_state(client)
        repo = repository_of(state, url, repository)
        result = RolloutResult(bundle, state.live, seconds=seconds)
        if state.live == bundle:
            result.already_live = True
            return result
        live = state.live or "none"
        held = state.bundles.get(bundle)  # reuse only a complete, ready set (a killed rollout may leave less)
        result.reused = held is not None and held.ready and set(models.stage_names + [models.pinned_name]) <= set(held.models)
        phase = "load"
        try:
            mark = time.monotonic()
            if not result.reused:
                load_bundle(url, repo, models)
            seconds["load"] = time.monotonic() - mark
            phase = "smoke"
            mark = time.monotonic()
            result.smoke_requests = smoke(url, models.pinned_name, bundle, export_root, smoke_users)
            seconds["smoke"] = time.monotonic() - mark
            phase = "switch"
            mark = time.monotonic()
            seconds["switch_load"] = switch(client, repo, bundle, previous=state.live)
            seconds["switch"] = time.monotonic() - mark  # traffic is on the new bundle from here
        except Exception as error:  # noqa: BLE001 - every failure leaves traffic where it was
            if phase != "switch" and not result.reused:
                unload_bundle(client, repo, bundle, models.stage_names + [models.pinned_name])
            raise RolloutError(
                f"rollout of bundle {bundle} failed at {phase}: {_error_text(error)}; "
                f"live traffic stays on bundle {live}"
            ) from None
        mark = time.monotonic()
        result.extras_failed = load_extras(client, repo, models)  # interactions follows the live bundle
        seconds["extras"] = time.monotonic() - mark
        mark = time.monotonic()
        set_info(client, repo, bundle)  # the gauge follows (a Python model reload: seconds, after the switch)
        seconds["gauge"] = time.monotonic() - mark
        mark = time.monotonic()  # memory stays bounded: live + previous (+ the new one during a rollout)
        result.unloaded = unload_stale(client, repo, state, keep={bundle, state.live}, grace_s=grace_s)
        seconds["unload_stale"] = time.monotonic() - mark
        seconds["total"] = time.monotonic() - started
        LOG.info("bundle %s is live (previous %s) in %.2f s", bundle, state.live, seconds["total"])
        return result


def _refuse_during_experiment(client: Any, url: str) -> None:
    """While an experiment runs `recommend` is its router: end it first (cascade/experiments)."""
    from cascade.experiments.state import running_experiment

    experiment = running_experiment(client)
    if experiment is not None:
        raise RolloutError(f"experiment {experiment.name} is running on {url} (control {experiment.control}, treatment "
                           f"{experiment.treatment}); end it with `cascade experiment stop --url {url} --abort|--promote`")


def load_bundle(url: str, repo: Path, models: BundleModels) -> None:
    """Write the bundle's model folders and load the stages (in parallel), then its pinned ensemble."""
    import tritonclient.grpc as grpcclient

    for folder in models.stages:
        write_folder(repo, folder)
    write_folder(repo, models.ensemble_folder(models.pinned_name))

    def load(name: str) -> None:
        client = grpcclient.InferenceServerClient(url)
        try:
            client.load_model(name, headers=admin_headers())
        finally:
            client.close()

    with ThreadPoolExecutor(max_workers=len(models.stages)) as pool:
        futures = {name: pool.submit(load, name) for name in models.stage_names}
    failed = {name: f.exception() for name, f in futures.items() if f.exception() is not None}
    if failed:
        name, error = next(iter(failed.items()))
        raise RolloutError(f"model {name} did not load: {_error_text(error)}"
                           + (f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""))
    load(models.pinned_name)


def switch(client: Any, repo: Path, bundle: str, previous: str | None) -> float:
    """Re-pin ``recommend`` to ``bundle`` (whose pinned ensemble is loaded) in one load; returns
    the seconds of that load. config.pbtxt on disk is rewritten first (a restart comes back on it)."""
    from google.protobuf import json_format
    from tritonclient.grpc import model_config_pb2 as pb

    headers = admin_headers()
    pinned = client.get_model_config(model_name(ENSEMBLE, bundle), headers=headers, as_json=True)["config"]
    config = json_format.ParseDict(pinned, pb.ModelConfig(), ignore_unknown_fields=True)
    config.name = ENSEMBLE
    config.parameters[BUNDLE_PARAMETER].string_value = bundle
    config.parameters[PREVIOUS].string_value = previous or ""
    config.parameters[LIVE_SINCE].string_value = now_iso()
    path = repo / ENSEMBLE / "config.pbtxt"
    before = path.read_bytes() if path.is_file() else None
    write_folder(repo, ModelFolder(ENSEMBLE, config, {"1/.keep": b""}))
    mark = time.monotonic()
    try:
        client.load_model(ENSEMBLE, config=config_json(config), headers=headers)
    except Exception:
        if before is not None:  # the server keeps the old ensemble; so does the disk
            path.write_bytes(before)
        raise
    return time.monotonic() - mark


def load_extras(client: Any, repo: Path, models: BundleModels) -> list[str]:
    """(Re)load the bundle's models outside the ensemble under their own names (``interactions``)
    from its export, after the switch. Triton keeps a model whose reload fails on its old version,
    so a failure is logged and returned (the names), never raised: `recommend` already switched."""
    failed = []
    for folder in models.extras:
        write_folder(repo, folder)
        try:
            client.load_model(folder.name, headers=admin_headers())
        except Exception as error:  # noqa: BLE001
            LOG.error("model %s of bundle %s did not load (the previous one keeps serving): %s",
                      folder.name, models.bundle_id, _error_text(error))
            failed.append(folder.name)
    return failed


def set_info(client: Any, repo: Path, bundle: str) -> None:
    """(Re)load the cascade_bundle_info gauge model for ``bundle`` (it also records ``repo``)."""
    folder = info_model_folder(bundle, repo)
    write_folder(repo, folder)
    try:
        client.load_model(INFO_MODEL, headers=admin_headers())
    except Exception as error:  # noqa: BLE001 - the gauge is informational; traffic already switched
        LOG.warning("cascade_bundle_info did not load for %s: %s", bundle, _error_text(error))


def unload_bundle(client: Any, repo: Path, bundle: str, names: list[str]) -> None:
    """Unload a bundle's models (ensemble first) and delete their folders."""
    headers = admin_headers()
    for name in sorted(names, key=lambda n: not n.startswith(ENSEMBLE + "__")):
        try:
            client.unload_model(name, headers=headers)
        except Exception as error:  # noqa: BLE001 - a model that never loaded cannot unload
            LOG.debug("unload %s: %s", name, _error_text(error))
        shutil.rmtree(repo / name, ignore_errors=True)
    LOG.info("bundle %s unloaded", bundle)


def unload_stale(client: Any, repo: Path, state: ServerState, keep: set[str | None], grace_s: float) -> list[str]:
    """Unload the bundles of ``state`` not in ``keep`` once drained. They stopped being live at
    ``state.live_since`` at the latest; within ``grace_s`` of that, each one's pinned ensemble must
    first have completed no request for a second (:func:`~cascade.bundles.state.wait_drained`, the
    same check an experiment's treatment gets at its stop), waiting at most the rest of the grace.
    Past the grace nothing that started on them is still running (Triton's own request timeout is
    far below the default 30 s), so they go at once."""
    stale = [b for b in state.bundles if b not in keep]
    if not stale:
        return []
    if state.live_since:
        left = grace_s - (time.time() - datetime.fromisoformat(state.live_since).timestamp())
        for bundle in stale:
            if left > 0:
                left -= wait_drained(client, model_name(ENSEMBLE, bundle), quiet_s=min(1.0, left), limit_s=left)
    for bundle in stale:
        unload_bundle(client, repo, bundle, list(state.bundles[bundle].models))
    return stale


def rollback(url: str, *, repository: Path | None = None, lock_timeout_s: float = 30.0,
             lock_dir: Path | None = None) -> RolloutResult:
    """Switch ``recommend`` back to the previous bundle (still loaded) in one load."""
    started = time.monotonic()
    with rollout_lock(url, lock_timeout_s, lock_dir):
        client = connect(url)
        _refuse_during_experiment(client, url)
        state = read_state(client)
        repo = repository_of(state, url, repository)
        if not state.live or not state.previous:
            raise NotFoundError(f"the server at {url} has no previous bundle to roll back to (live: {state.live})")
        if not state.loaded(state.previous) or model_name(ENSEMBLE, state.previous) not in state.bundles[state.previous].models:
            raise RolloutError(
                f"previous bundle {state.previous} is no longer loaded (unloaded by a later rollout); "
                f"roll it out again with `cascade rollout EXPORT --url {url}`; live traffic stays on {state.live}"
            )
        try:
            load_s = switch(client, repo, state.previous, previous=state.live)
        except Exception as error:  # noqa: BLE001
            raise RolloutError(f"rollback to {state.previous} failed: {_error_text(error)}; "
                               f"live traffic stays on bundle {state.live}") from None
        switched_s = time.monotonic() - started  # command start -> traffic on the previous bundle
        extras_failed: list[str] = []
        root = state.bundles[state.previous].export_root
        if root and Path(root).is_dir():
            extras_failed = load_extras(client, repo, BundleModels.from_export(Path(root), state.previous))
        set_info(client, repo, state.previous)
        return RolloutResult(state.previous, state.live, extras_failed=extras_failed, seconds={
            "switch_load": load_s, "to_switched": switched_s, "total": time.monotonic() - started})
