"""Start, re-share and stop an experiment in a running bundle server (explicit model control).

start: lock -> verify the treatment export -> load its stage models and pinned ensemble beside
the live (control) bundle (unless loaded) -> smoke it -> load the router as ``recommend`` (one
repository-API load with a config override: Triton swaps it in when it is ready; in-flight
requests finish on the ensemble). set_share: one load of the router with the new share (atomic).
stop --abort: ``recommend`` back to the control's ensemble in one load, treatment unloaded.
stop --promote: ``recommend`` to the treatment's ensemble in one load (control kept as previous,
so ``cascade rollback`` still works).
"""

from __future__ import annotations

import logging
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cascade.bundles.lock import rollout_lock
from cascade.bundles.models import LIVE_SINCE, PREVIOUS, BundleModels, ModelFolder, config_json, now_iso, write_folder
from cascade.bundles.state import admin_headers, connect, parameters, read_state, repository_of, wait_drained
from cascade.bundles.tagging import BUNDLE_PARAMETER, ENSEMBLE
from cascade.errors import InvalidInputError, NotFoundError, RolloutError
from cascade.experiments.state import Experiment, check_name, check_share, running_experiment

LOG = logging.getLogger(__name__)
ROUTER_SOURCE = (
    '"""recommend during an experiment: the router of cascade/experiments/router.py (written by '
    '`cascade experiment start`)."""\nfrom cascade.experiments.router import TritonPythonModel  # noqa: F401\n'
)
# BLS calls block their instance (async execute does not overlap requests on 2.51: benchmarks/async_bls_check.py),
# so the count bounds the requests in flight. 16 kept c=8 throughput within 10 % of the plain ensemble
# (0.91 and 0.93 of it; 4 instances: 0.68 and 0.81): benchmarks/NOTES.md "Experiment router concurrency".
DEFAULT_ROUTER_INSTANCES = 16
ROUTER_INSTANCES_ENV = "CASCADE_ROUTER_INSTANCES"
EXPOSURE_LOG_ENV = "CASCADE_EXPOSURE_LOG"
EXPOSURE_LOG_OFF = ("", "off", "none")


def default_router_instances() -> int:
    """$CASCADE_ROUTER_INSTANCES, else :data:`DEFAULT_ROUTER_INSTANCES`."""
    import os

    text = os.environ.get(ROUTER_INSTANCES_ENV, "").strip()
    if not text:
        return DEFAULT_ROUTER_INSTANCES
    try:
        return int(text)
    except ValueError:
        raise InvalidInputError(f"{ROUTER_INSTANCES_ENV} must be a whole number of router instances 1..64, got {text!r}") from None


def exposure_log_url(value: str | None, repository: Path) -> str:
    """The router's ``exposure_log``: ``value``, else $CASCADE_EXPOSURE_LOG, else the folder
    ``exposure_log`` beside the bundle repository; "off"/"none"/"" disable it. A local path is made
    absolute (the router resolves nothing)."""
    import os

    text = value if value is not None else os.environ.get(EXPOSURE_LOG_ENV) or str(Path(repository).parent / "exposure_log")
    if text.strip().lower() in EXPOSURE_LOG_OFF:
        return ""
    if "://" in text and not text.startswith("file://"):
        return text
    return str(Path(text[len("file://"):] if text.startswith("file://") else text).expanduser().resolve())


@dataclass
class ExperimentResult:
    experiment: dict[str, Any]
    action: str
    loaded: bool = False
    seconds: dict[str, float] = field(default_factory=dict)


def router_folder(pinned: dict[str, Any], experiment: Experiment, previous: str | None, live_since: str | None,
                  instances: int) -> ModelFolder:
    """The router's config: the pinned ensemble's inputs/outputs + the optional ``variant`` input
    and the ``variant`` output, the experiment state as parameters."""
    from google.protobuf import json_format
    from tritonclient.grpc import model_config_pb2 as pb

    inputs = [i for i in pinned.get("input", []) if i["name"] != "variant"]
    outputs = [o for o in pinned.get("output", []) if o["name"] != "variant"]
    params = {BUNDLE_PARAMETER: experiment.control, PREVIOUS: previous or "", LIVE_SINCE: live_since or now_iso(),
              **experiment.parameters()}
    config = {
        "name": ENSEMBLE, "backend": "python", "max_batch_size": 0,
        "input": inputs + [{"name": "variant", "data_type": "TYPE_STRING", "dims": [1], "optional": True}],
        "output": outputs + [{"name": "variant", "data_type": "TYPE_STRING", "dims": [1]}],
        "instance_group": [{"kind": "KIND_CPU", "count": instances}],
        "parameters": {k: {"string_value": v} for k, v in params.items()},
    }
    message = json_format.ParseDict(config, pb.ModelConfig(), ignore_unknown_fields=True)
    return ModelFolder(ENSEMBLE, message, {"1/model.py": ROUTER_SOURCE.encode()})


def load_router(client: Any, repo: Path, folder: ModelFolder) -> float:
    """Write the router folder and load it as ``recommend`` in one call; on failure the disk gets
    the old config back and the server keeps what it served."""
    path = repo / ENSEMBLE / "config.pbtxt"
    before = path.read_bytes() if path.is_file() else None
    write_folder(repo, folder)
    mark = time.monotonic()
    try:
        client.load_model(ENSEMBLE, config=config_json(folder.config), headers=admin_headers())
    except Exception:
        if before is not None:
            path.write_bytes(before)
        raise
    return time.monotonic() - mark


def _drop_router_source(repo: Path) -> None:
    (repo / ENSEMBLE / "1" / "model.py").unlink(missing_ok=True)
    shutil.rmtree(repo / ENSEMBLE / "1" / "__pycache__", ignore_errors=True)


def _router_params(client: Any) -> dict[str, str]:
    return parameters(client.get_model_config(ENSEMBLE, headers=admin_headers(), as_json=True)["config"])


def _message(error: BaseException) -> str:
    text = getattr(error, "message", None)
    return str((text() if callable(text) else text) or error)


def start(export_root: Path, url: str, *, share: float, name: str | None = None, salt: str | None = None,
          repository: Path | None = None, public_key: Path | None = None, instances: int | None = None,
          exposure_log: str | None = None, exposure_flush_seconds: float = 5.0,
          lock_timeout_s: float = 300.0, lock_dir: Path | None = None) -> ExperimentResult:
    from cascade.bundles.manifest import verify_bundle
    from cascade.bundles.rollout import load_bundle, unload_bundle
    from cascade.bundles.smoke import smoke

    share = check_share(share)
    instances = default_router_instances() if instances is None else int(instances)
    if not 1 <= instances <= 64:
        raise InvalidInputError(f"router instances must be 1..64, got {instances}")
    seconds: dict[str, float] = {}
    started = time.monotonic()
    with rollout_lock(url, lock_timeout_s, lock_dir):
        client = connect(url)
        running = running_experiment(client)
        if running is not None:
            raise RolloutError(f"experiment {running.name} is already running on {url} (treatment {running.treatment}); "
                               f"stop it first with `cascade experiment stop --url {url} --abort|--promote`")
        state = read_state(client)
        if not state.live:
            raise NotFoundError(f"the server at {url} has no live bundle (the control); roll one out first")
        repo = repository_of(state, url, repository)
        manifest = verify_bundle(Path(export_root), public_key=public_key)
        treatment = manifest.bundle_id
        started_at = now_iso()
        experiment = Experiment(check_name(name or f"exp-{treatment}"[:64], "--name"),
                                check_name(salt or secrets.token_hex(8), "--salt"), share, state.live, treatment,
                                started_at, started_at, exposure_log_url(exposure_log, repo), float(exposure_flush_seconds))
        models = BundleModels.from_export(Path(export_root), treatment)
        held = state.bundles.get(treatment)
        loaded = not (held is not None and held.ready and set(models.stage_names + [models.pinned_name]) <= set(held.models))
        phase = "load"
        try:
            mark = time.monotonic()
            if loaded:
                load_bundle(url, repo, models)
            seconds["load"] = time.monotonic() - mark
            phase = "smoke"
            mark = time.monotonic()
            smoke(url, models.pinned_name, treatment, models.export_root)
            seconds["smoke"] = time.monotonic() - mark
            phase = "router"
            pinned = client.get_model_config(f"{ENSEMBLE}__{state.live}", headers=admin_headers(), as_json=True)["config"]
            folder = router_folder(pinned, experiment, state.previous, state.live_since, instances)
            seconds["router_load"] = load_router(client, repo, folder)
        except Exception as error:  # noqa: BLE001 - traffic stays on the control
            if loaded and treatment != state.previous:
                unload_bundle(client, repo, treatment, models.stage_names + [models.pinned_name])
            raise RolloutError(f"experiment start with bundle {treatment} failed at {phase}: {_message(error)}; "
                               f"live traffic stays on bundle {state.live}") from None
        seconds["total"] = time.monotonic() - started
        LOG.info("experiment %s: %s of users -> %s (control %s)", experiment.name, share, treatment, state.live)
        return ExperimentResult(experiment.to_dict(), "started", loaded, seconds)


def set_share(url: str, share: float, *, repository: Path | None = None, lock_timeout_s: float = 60.0,
              lock_dir: Path | None = None) -> ExperimentResult:
    """Change the treatment share: one load of the router (users only move control -> treatment
    when the share rises)."""
    from dataclasses import replace

    share = check_share(share)
    with rollout_lock(url, lock_timeout_s, lock_dir):
        client = connect(url)
        experiment = _require(client, url)
        repo = repository_of(read_state(client), url, repository)
        params = _router_params(client)
        updated = replace(experiment, share=share, share_since=now_iso())
        pinned = client.get_model_config(f"{ENSEMBLE}__{experiment.control}", headers=admin_headers(), as_json=True)["config"]
        instances = int(client.get_model_config(ENSEMBLE, headers=admin_headers(), as_json=True)["config"]
                        ["instance_group"][0].get("count", DEFAULT_ROUTER_INSTANCES))
        folder = router_folder(pinned, updated, params.get(PREVIOUS), params.get(LIVE_SINCE), instances)
        load_s = load_router(client, repo, folder)
        return ExperimentResult(updated.to_dict(), "share", seconds={"router_load": load_s})


def _require(client: Any, url: str) -> Experiment:
    experiment = running_experiment(client)
    if experiment is None:
        raise NotFoundError(f"no experiment is running on {url} (`recommend` is the plain ensemble)")
    return experiment


def _extras_follow(client, repo: Path, state, bundle: str) -> None:
    """Models outside the ensemble (`interactions`) follow the promoted bundle, as after a rollout."""
    from cascade.bundles.rollout import load_extras

    info = state.bundles.get(bundle)
    if info is not None and info.export_root and Path(info.export_root).is_dir():
        load_extras(client, repo, BundleModels.from_export(Path(info.export_root), bundle))


def stop(url: str, *, promote: bool = False, repository: Path | None = None, lock_timeout_s: float = 60.0,
         lock_dir: Path | None = None) -> ExperimentResult:
    """End the experiment: --abort (default) puts every user back on the control and unloads the
    treatment; --promote makes the treatment live (control kept loaded as the previous bundle)."""
    from cascade.bundles.rollout import set_info, switch, unload_bundle

    started = time.monotonic()
    with rollout_lock(url, lock_timeout_s, lock_dir):
        client = connect(url)
        experiment = _require(client, url)
        state = read_state(client)
        repo = repository_of(state, url, repository)
        params = _router_params(client)
        try:
            if promote:
                switch_s = switch(client, repo, experiment.treatment, previous=experiment.control)
            else:
                switch_s = switch(client, repo, experiment.control, previous=params.get(PREVIOUS) or None)
        except Exception as error:  # noqa: BLE001
            raise RolloutError(f"experiment {experiment.name}: stop failed: {_message(error)}; the router keeps "
                               f"serving (share {experiment.share})") from None
        _drop_router_source(repo)
        switched = time.monotonic() - started
        if promote:
            _extras_follow(client, repo, state, experiment.treatment)
            set_info(client, repo, experiment.treatment)
        else:
            info = state.bundles.get(experiment.treatment)
            if experiment.treatment != (params.get(PREVIOUS) or None):  # keep what `cascade rollback` needs
                wait_drained(client, f"{ENSEMBLE}__{experiment.treatment}")
                unload_bundle(client, repo, experiment.treatment, list(info.models) if info else [])
        return ExperimentResult(experiment.to_dict(), "promoted" if promote else "aborted",
                                seconds={"switch_load": switch_s, "to_switched": switched, "total": time.monotonic() - started})
