"""Feast operations on a generated feature repo: ``apply`` (register definitions) and ``materialize``
(offline Parquet -> online store, then publish the item snapshot).

Both are idempotent; with ``skip_if_fresh=True`` they return at once when their inputs (the repo
files and source Parquet) are unchanged since the last successful run (markers under
``repo_dir/.cascade/``). Feast is imported inside functions (it takes seconds to import).
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from cascade.cache import hash_files, inputs_hash, is_fresh, mark_done
from cascade.errors import NotFoundError, UnavailableError
from cascade.features.repo import (
    DEFINITIONS_FILE,
    ITEM_SOURCE,
    ITEM_VIEW,
    REGISTRY_PATH,
    SQLITE_PATH,
    USER_SOURCE,
    USER_VIEW,
    FeatureRepo,
)
from cascade.progress import library_bars_quiet

if TYPE_CHECKING:  # pragma: no cover
    from feast import FeatureStore

    from cascade.features.redis_config import RedisTimeouts

STATE_DIR = ".cascade"


@dataclass(frozen=True)
class ApplyResult:
    views: list[str]
    skipped: bool


@dataclass(frozen=True)
class MaterializeResult:
    rows: dict[str, int]  # feature view -> rows written to the online store
    snapshot_version: str
    snapshot_rows: int
    skipped: bool


def open_store(repo_dir: Path, redis_timeouts: "RedisTimeouts | None" = None) -> "FeatureStore":
    """A ``feast.FeatureStore`` on the repo folder (NotFoundError when it is not a feature repo).

    A Redis online store gets its run-time settings here, never from the export: the password from
    ``CASCADE_REDIS_PASSWORD``/``CASCADE_REDIS_PASSWORD_FILE``, explicit socket timeouts
    (``redis_timeouts``; generous offline defaults) and no client retries
    (:mod:`cascade.features.redis_config`)."""
    repo = FeatureRepo.load(repo_dir)
    if not repo.feature_store_yaml.is_file():
        raise NotFoundError(f"{repo.feature_store_yaml} is missing; regenerate the feature repo")
    from feast import FeatureStore

    if repo.online_store != "redis":
        return FeatureStore(repo_path=str(repo.root))
    import os

    import yaml
    from feast.repo_config import RepoConfig

    from cascade.features.redis_config import OFFLINE_TIMEOUTS, runtime_connection

    # as feast.repo_config.load_repo_config does: ${ENV} placeholders expand at load
    raw = yaml.safe_load(os.path.expandvars(repo.feature_store_yaml.read_text()))
    online = dict(raw["online_store"])
    online["connection_string"] = runtime_connection(str(online["connection_string"]), redis_timeouts or OFFLINE_TIMEOUTS)
    raw["online_store"] = online
    config = RepoConfig(**raw)
    config.repo_path = repo.root
    return FeatureStore(repo_path=str(repo.root), config=config)


def load_definitions(repo_dir: Path) -> list:
    """The Entity and FeatureView objects defined in the repo's definitions file."""
    from feast import Entity, FeatureView

    path = Path(repo_dir).resolve() / DEFINITIONS_FILE
    if not path.is_file():
        raise NotFoundError(f"{path} is missing; regenerate the feature repo")
    name = "cascade_feast_definitions_" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    dont_write = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # no __pycache__ inside the repo folder
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = dont_write
    objects = [v for v in vars(module).values() if isinstance(v, (Entity, FeatureView))]
    # Entities first: Feast resolves a view's entities at apply time.
    return sorted(objects, key=lambda o: 0 if isinstance(o, Entity) else 1)


def _state(repo: FeatureRepo, step: str) -> Path:
    path = repo.root / STATE_DIR / step
    path.mkdir(parents=True, exist_ok=True)
    return path


def _apply_key(repo: FeatureRepo) -> str:
    return hash_files([repo.feature_store_yaml, repo.definitions])


def apply(repo_dir: Path, skip_if_fresh: bool = False) -> ApplyResult:
    """Register the repo's entities and feature views in its registry (``feast apply``); views in
    the registry that the definitions no longer name are deleted."""
    from feast import FeatureView

    repo = FeatureRepo.load(repo_dir)
    key = _apply_key(repo)
    state = _state(repo, "apply")
    views = [USER_VIEW, ITEM_VIEW]
    if skip_if_fresh and is_fresh(state, key) and (repo.root / REGISTRY_PATH).is_file():
        return ApplyResult(views=views, skipped=True)
    objects = load_definitions(repo.root)
    store = open_store(repo.root)
    try:
        store.apply(objects)
        names = {o.name for o in objects if isinstance(o, FeatureView)}
        stale = [fv for fv in store.list_feature_views() if fv.name not in names]
        if stale:
            store.apply([], objects_to_delete=stale, partial=False)
    except Exception as exc:  # feast raises many unrelated types; name the repo
        if repo.online_store == "redis":
            raise UnavailableError(
                f"feast apply failed for {repo.root} (Redis {repo.redis_connection}): {exc}"
            ) from exc
        raise
    mark_done(state, key)
    return ApplyResult(views=sorted(names), skipped=False)


def _materialize_key(repo: FeatureRepo) -> str:
    return inputs_hash(
        apply=_apply_key(repo),
        sources=hash_files([repo.root / USER_SOURCE, repo.root / ITEM_SOURCE]),
    )


def materialize_range(repo: FeatureRepo) -> tuple[datetime, datetime]:
    """The full range: from the epoch to after both now and the feature timestamp."""
    start = datetime(1970, 1, 2, tzinfo=timezone.utc)
    feature_time = datetime.fromtimestamp(repo.feature_timestamp, tz=timezone.utc)
    end = max(datetime.now(timezone.utc), feature_time) + timedelta(seconds=1)
    return start, end


def materialize(repo_dir: Path, skip_if_fresh: bool = False) -> MaterializeResult:
    """Materialize both views over the full range into the online store, then publish a new item
    snapshot (read through the registered ``item_features`` view). Applies first if needed."""
    import pyarrow.parquet as pq

    from cascade.features.snapshot import latest_version, write_item_snapshot

    repo = FeatureRepo.load(repo_dir)
    apply(repo.root, skip_if_fresh=True)
    key = _materialize_key(repo)
    state = _state(repo, "materialize")
    rows = {
        USER_VIEW: pq.read_metadata(repo.root / USER_SOURCE).num_rows,
        ITEM_VIEW: pq.read_metadata(repo.root / ITEM_SOURCE).num_rows,
    }
    current = latest_version(repo.root)
    online_ok = repo.online_store != "sqlite" or (repo.root / SQLITE_PATH).is_file()
    if skip_if_fresh and current and online_ok and is_fresh(state, key):
        return MaterializeResult(rows=rows, snapshot_version=current,
                                 snapshot_rows=rows[ITEM_VIEW], skipped=True)
    store = open_store(repo.root)
    start, end = materialize_range(repo)
    try:
        with library_bars_quiet():  # Feast's own bars: on a terminal only, like ours
            store.materialize(start_date=start, end_date=end)
    except Exception as exc:
        if repo.online_store == "redis":
            raise UnavailableError(
                f"feast materialize failed for {repo.root} (Redis {repo.redis_connection}): {exc}"
            ) from exc
        raise
    version, n = write_item_snapshot(store, repo, start, end)
    mark_done(state, key, snapshot_version=version)
    return MaterializeResult(rows=rows, snapshot_version=version, snapshot_rows=n, skipped=False)
