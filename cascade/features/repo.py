"""Generate a Feast feature repo for a canonical dataset folder.

Layout written into ``repo_dir`` (all paths inside the repo are relative, so the folder can be moved
or copied into an export as a whole)::

    feature_store.yaml          project ``cascade``, provider local, file registry, SQLite (or Redis)
    definitions.py              entities user/item, FeatureViews user_features/item_features, FileSources
    cascade_repo.json           FeatureRepo metadata (feature lists, timestamp, dataset hash)
    data/user_features.parquet  one row per user: attributes + recent_items/seen_items/n_interactions
    data/item_features.parquet  one row per item (catalog order): attributes + catalog_row
    data/registry.db            written by ``apply``
    data/online.db              SQLite online store, written by ``materialize``
    item_snapshot/              written by ``materialize`` (see cascade.features.snapshot)

The view schemas are derived from ``DatasetInfo`` column kinds and the Parquet Arrow types
(:mod:`cascade.features.schema`), so any imported dataset works. User features come from the TRAIN
interactions only (:func:`cascade.features.history.user_history`). Every row carries the same
``event_timestamp``: the dataset's max train timestamp.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cascade.cache import hash_files, inputs_hash, is_fresh, mark_done, replace_dir
from cascade.errors import InvalidInputError, NotFoundError
from cascade.events.push import PUSH_SOURCE
from cascade.features.history import HISTORY_LENGTH, user_history
from cascade.ids import IdIndex
from cascade.features.schema import (
    CATALOG_ROW,
    DERIVED_USER_COLUMNS,
    EVENT_TIMESTAMP,
    FeastColumn,
    attribute_columns,
    conform,
)

OnlineStoreKind = Literal["sqlite", "redis"]

PROJECT = "cascade"
GENERATOR_VERSION = 2  # 2: user view sourced from a PushSource (cascade.events.push)
REPO_META_FILE = "cascade_repo.json"  # marks a generated feature repo (not the snapshot's meta.json)
DEFINITIONS_FILE = "definitions.py"
USER_VIEW = "user_features"
ITEM_VIEW = "item_features"
USER_SOURCE = "data/user_features.parquet"
ITEM_SOURCE = "data/item_features.parquet"
REGISTRY_PATH = "data/registry.db"
SQLITE_PATH = "data/online.db"
SNAPSHOT_DIR = "item_snapshot"
#: host:port[,host:port...][,key=value...] as Feast's Redis store parses it.
_REDIS_RE = re.compile(r"^[^,:=\s]+:\d+(,[^,:=\s]+:\d+)*(,[A-Za-z_]+=[^,\s]*)*$")


@dataclass
class ViewColumns:
    """Feature names and Feast types of one view (entity column excluded)."""

    names: list[str]
    feast_types: dict[str, str]
    kinds: dict[str, str]

    def list_columns(self) -> list[str]:
        return [n for n in self.names if self.feast_types[n].startswith("Array(")]


@dataclass
class FeatureRepo:
    """A generated feature repo (contents of ``cascade_repo.json`` + its location)."""

    root: Path
    online_store: OnlineStoreKind
    feature_timestamp: int  # unix seconds; the event_timestamp of every row
    dataset_name: str
    dataset_hash: str
    n_users: int
    n_items: int
    user: ViewColumns
    item: ViewColumns
    history_length: int = HISTORY_LENGTH
    redis_connection: str | None = None
    generator_version: int = GENERATOR_VERSION
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def feature_store_yaml(self) -> Path:
        return self.root / "feature_store.yaml"

    @property
    def definitions(self) -> Path:
        return self.root / DEFINITIONS_FILE

    @property
    def snapshot_dir(self) -> Path:
        return self.root / SNAPSHOT_DIR

    def save(self) -> None:
        payload = asdict(self)
        payload.pop("root")
        (self.root / REPO_META_FILE).write_text(json.dumps(payload, indent=2))

    @classmethod
    def load(cls, repo_dir: Path) -> "FeatureRepo":
        root = Path(repo_dir).resolve()
        path = root / REPO_META_FILE
        if not path.is_file():
            raise NotFoundError(
                f"{repo_dir} is not a cascade feature repo: {REPO_META_FILE} is missing "
                "(create one with `cascade features generate --data DIR --repo DIR`)"
            )
        payload = json.loads(path.read_text())
        payload["user"] = ViewColumns(**payload["user"])
        payload["item"] = ViewColumns(**payload["item"])
        return cls(root=root, **payload)


def _view_columns(columns: list[FeastColumn]) -> ViewColumns:
    return ViewColumns(
        names=[c.name for c in columns],
        feast_types={c.name: c.feast_type for c in columns},
        kinds={c.name: c.kind for c in columns},
    )


def _check_online_store(online_store: str, redis_connection: str | None) -> None:
    if online_store not in ("sqlite", "redis"):
        raise InvalidInputError(f"--online-store must be 'sqlite' or 'redis', got {online_store!r}")
    if online_store == "redis":
        from cascade.features.redis_config import check_export_connection, redacted

        if not redis_connection:
            raise InvalidInputError(
                "--redis-connection is required with --online-store redis "
                "(form host:port[,ssl=true][,db=N], e.g. redis:6379,db=0; the password is read at run time "
                "from CASCADE_REDIS_PASSWORD or CASCADE_REDIS_PASSWORD_FILE)"
            )
        if "$" not in redis_connection and not _REDIS_RE.match(redis_connection):
            raise InvalidInputError(
                f"--redis-connection {redacted(redis_connection)!r} is not of the form "
                "host:port[,host:port...][,key=value...] (e.g. my-cache.abc.use1.cache.amazonaws.com:6379,ssl=true)"
            )
        check_export_connection(redis_connection)  # no literal secrets, no runtime-owned options
    elif redis_connection:
        raise InvalidInputError("--redis-connection is only valid with --online-store redis")


def redis_type(connection: str) -> str:
    """``redis_cluster`` for several startup nodes or an ElastiCache cluster-mode configuration
    endpoint (``clustercfg.*``), else ``redis``."""
    nodes = [part for part in connection.split(",") if part and "=" not in part]
    if len(nodes) > 1 or (nodes and nodes[0].startswith("clustercfg.")):
        return "redis_cluster"
    return "redis"


def feature_store_yaml(online_store: OnlineStoreKind, redis_connection: str | None) -> str:
    """The ``feature_store.yaml`` text (relative paths resolve against the repo folder)."""
    lines = [
        f"project: {PROJECT}",
        "provider: local",
        "registry:",
        "  registry_type: file",
        f"  path: {REGISTRY_PATH}",
        # 0 = cache the registry forever: with a TTL Feast re-reads the registry file inside a
        # get_online_features call when it expires (a latency spike on the serving hot path).
        # Feature values are read live from the online store, so materialization stays visible.
        "  cache_ttl_seconds: 0",
    ]
    if online_store == "sqlite":
        lines += ["online_store:", "  type: sqlite", f"  path: {SQLITE_PATH}"]
    else:
        lines += [
            "online_store:",
            "  type: redis",
            f"  redis_type: {redis_type(redis_connection or '')}",
            f"  connection_string: {json.dumps(redis_connection)}",
        ]
    lines += [
        "offline_store:",
        "  type: file",
        "entity_key_serialization_version: 3",
        "",
    ]
    return "\n".join(lines)


def _fields(columns: dict[str, str]) -> str:
    return "\n".join(f'        Field(name="{n}", dtype={t}),' for n, t in columns.items())


def definitions_py(repo: FeatureRepo) -> str:
    """The Feast object definitions (readable; also usable with the plain ``feast apply`` CLI)."""
    user_fields = {"user_id": "Int64", **repo.user.feast_types}
    item_fields = {"item_id": "Int64", **repo.item.feast_types}
    return f'''"""Feast definitions generated by `cascade features generate` from dataset
{repo.dataset_name!r} (content hash {repo.dataset_hash[:12]}). Regenerate instead of editing."""

from datetime import timedelta

from feast import Entity, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Array, Bool, Float32, Float64, Int32, Int64, String  # noqa: F401

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64,
              description="A user; raw user_id as in the dataset")
item = Entity(name="item", join_keys=["item_id"], value_type=ValueType.INT64,
              description="An item; raw item_id as in the dataset")

user_source = FileSource(
    name="user_features_source",
    path="{USER_SOURCE}",
    timestamp_field="{EVENT_TIMESTAMP}",
)
# Interaction events (`interactions` model, cascade/events/push.py) push user rows here; the
# batch source stays the Parquet file that materialize reads.
user_push = PushSource(name="{PUSH_SOURCE}", batch_source=user_source)
item_source = FileSource(
    name="item_features_source",
    path="{ITEM_SOURCE}",
    timestamp_field="{EVENT_TIMESTAMP}",
)

# ttl 0: features never expire (they change only when the repo is re-materialized).
{USER_VIEW} = FeatureView(
    name="{USER_VIEW}",
    entities=[user],
    ttl=timedelta(0),
    schema=[
{_fields(user_fields)}
    ],
    source=user_push,
    online=True,
    description="User attributes + recent_items/seen_items/n_interactions from train, updated by pushed events",
)
{ITEM_VIEW} = FeatureView(
    name="{ITEM_VIEW}",
    entities=[item],
    ttl=timedelta(0),
    schema=[
{_fields(item_fields)}
    ],
    source=item_source,
    online=True,
    description="Item attributes; served from the item snapshot on the hot path",
)
'''


def _user_table(paths, info, ts: pa.Scalar) -> tuple[pa.Table, list[FeastColumn]]:
    users = pq.read_table(paths.users)
    columns = attribute_columns("user", info.user_columns, users.schema, paths.users.name)
    train = pq.read_table(paths.train, columns=["user_id", "item_id", "timestamp"]).to_pandas()
    train = train.sort_values(["user_id", "timestamp"], kind="stable")  # a no-op on canonical data
    history = user_history(train)
    user_ids = users.column("user_id").to_numpy().astype(np.int64)
    missing = np.setdiff1d(history["user_id"].to_numpy(np.int64), user_ids)
    if missing.size:
        raise InvalidInputError(
            f"{paths.train}: user ids {missing[:5].tolist()} are not in {paths.users.name} "
            "(the dataset contract requires every train user there)"
        )
    rows = IdIndex(history["user_id"].to_numpy(np.int64)).rows(user_ids)
    has = rows >= 0
    empty = np.array([], dtype=np.int64)
    recent = history["recent_items"].to_numpy()
    seen = history["seen_items"].to_numpy()
    counts = np.zeros(len(user_ids), dtype=np.int64)
    counts[has] = history["n_interactions"].to_numpy(np.int64)[rows[has]]
    arrays = {
        "user_id": pa.array(user_ids, pa.int64()),
        **dict(zip([c.name for c in columns], conform(users, columns))),
        "recent_items": pa.array([recent[r] if r >= 0 else empty for r in rows], pa.list_(pa.int64())),
        "seen_items": pa.array([seen[r] if r >= 0 else empty for r in rows], pa.list_(pa.int64())),
        "n_interactions": pa.array(counts, pa.int64()),
        EVENT_TIMESTAMP: pa.array([ts.as_py()] * len(user_ids), ts.type),
    }
    derived = [FeastColumn(n, t, pa.list_(pa.int64()) if "Array" in t else pa.int64(), "derived")
               for n, t in DERIVED_USER_COLUMNS.items()]
    return pa.table(arrays), columns + derived


def _item_table(paths, info, ts: pa.Scalar) -> tuple[pa.Table, list[FeastColumn]]:
    items = pq.read_table(paths.items)
    columns = attribute_columns("item", info.item_columns, items.schema, paths.items.name)
    if "available" not in [c.name for c in columns]:
        raise InvalidInputError(
            f"{paths.items}: item column 'available' (bool) is missing from dataset.json item_columns; "
            "the canonical dataset always has it"
        )
    n = items.num_rows
    arrays = {
        "item_id": items.column("item_id").cast(pa.int64()),
        **dict(zip([c.name for c in columns], conform(items, columns))),
        CATALOG_ROW: pa.array(np.arange(n, dtype=np.int64)),
        EVENT_TIMESTAMP: pa.array([ts.as_py()] * n, ts.type),
    }
    return pa.table(arrays), columns


def _feature_timestamp(paths, info) -> int:
    train = pq.read_table(paths.train, columns=["timestamp"]).column("timestamp")
    if len(train):
        import pyarrow.compute as pc

        return int(pc.max(train).as_py())
    return int(info.time_range[1])


def generate_feature_repo(
    dataset_dir: Path,
    repo_dir: Path,
    online_store: OnlineStoreKind = "sqlite",
    redis_connection: str | None = None,
) -> FeatureRepo:
    """Write (or reuse, when its inputs are unchanged) the Feast feature repo for ``dataset_dir``.

    Idempotent and cached by input hash: a repo generated from the same dataset content and
    settings is returned as is (its registry, online store and snapshots are kept). Otherwise the
    repo is built in a temporary sibling folder and renamed over ``repo_dir``; an existing
    ``repo_dir`` must be a cascade feature repo (or empty) and is replaced as a whole.
    """
    from cascade.workflows.dataset import load_dataset

    _check_online_store(online_store, redis_connection)
    paths, info = load_dataset(Path(dataset_dir))
    dataset_hash = info.content_hash or hash_files([paths.users, paths.items, paths.train])
    key = inputs_hash(dataset=dataset_hash, online_store=online_store,
                      redis_connection=redis_connection, generator=GENERATOR_VERSION,
                      history_length=HISTORY_LENGTH)
    repo_dir = Path(repo_dir).resolve()
    if is_fresh(repo_dir, key) and (repo_dir / REPO_META_FILE).is_file():
        return FeatureRepo.load(repo_dir)
    if repo_dir.exists() and any(repo_dir.iterdir()) and not (repo_dir / REPO_META_FILE).is_file():
        raise InvalidInputError(
            f"--repo {repo_dir} exists and is not a cascade feature repo ({REPO_META_FILE} missing); "
            "choose an empty or new folder"
        )

    ts_seconds = _feature_timestamp(paths, info)
    ts = pa.scalar(datetime.fromtimestamp(ts_seconds, tz=timezone.utc), pa.timestamp("us", tz="UTC"))
    repo_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{repo_dir.name}.tmp-", dir=repo_dir.parent))
    try:
        (tmp / "data").mkdir()
        user_table, user_columns = _user_table(paths, info, ts)
        item_table, item_columns = _item_table(paths, info, ts)
        pq.write_table(user_table, tmp / USER_SOURCE)
        pq.write_table(item_table, tmp / ITEM_SOURCE)
        repo = FeatureRepo(
            root=tmp,
            online_store=online_store,
            feature_timestamp=ts_seconds,
            dataset_name=info.name,
            dataset_hash=dataset_hash,
            n_users=user_table.num_rows,
            n_items=item_table.num_rows,
            user=_view_columns(user_columns),
            item=_view_columns(item_columns),
            redis_connection=redis_connection,
            extra={"dataset_dir": str(paths.root)},
        )
        (tmp / "feature_store.yaml").write_text(feature_store_yaml(online_store, redis_connection))
        (tmp / DEFINITIONS_FILE).write_text(definitions_py(repo))
        (tmp / ".feastignore").write_text(f"{SNAPSHOT_DIR}/\ndata/\n.cascade/\n")
        repo.save()
        mark_done(tmp, key, dataset=str(paths.root))
        replace_dir(tmp, repo_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return FeatureRepo.load(repo_dir)
