"""Read published bundles from the object store (``s3://`` with boto3, ``file://``): what the k8s
model-sync containers use instead of the aws CLI (``cascade objects cat|sync``, k8s/base/scripts/
model-sync.sh), so they run from the serving image, which also has ``cascade verify`` and ``cascade
rollout``. Credentials are boto3's chain (IRSA in the pod); ``AWS_ENDPOINT_URL`` points it at an
S3-compatible endpoint (the tests use moto's server).

``sync_down(url, dest)`` is ``aws s3 sync URL/ DEST/`` for one prefix: every object not matched by
an exclude pattern is downloaded unless a local file of the same size is there already (so an
interrupted download resumes; the bundle's manifest, checked by ``cascade verify`` afterwards, is what
proves the content), each file through a temporary name and one rename; ``delete`` removes local
files the prefix no longer has.
"""

from __future__ import annotations

import fnmatch
import logging
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from cascade.bundles.publish import FileStore, S3Store, Store
from cascade.errors import CascadeError, InvalidInputError, UnavailableError

LOG = logging.getLogger(__name__)


def open_object(url: str) -> tuple[Store, str]:
    """``s3://bucket/key`` or ``file:///path`` -> (a store at the bucket or /, the key)."""
    parsed = urlparse(url)
    if parsed.scheme == "s3" and parsed.netloc:
        return S3Store(parsed.netloc, "", f"s3://{parsed.netloc}"), parsed.path.lstrip("/")
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost") and parsed.path.startswith("/"):
        return FileStore(Path("/"), "file:///"), parsed.path.lstrip("/")
    raise InvalidInputError(f"{url!r}: expected s3://BUCKET/KEY or file:///ABSOLUTE/PATH")


def _unavailable(url: str, error: Exception) -> UnavailableError:
    return UnavailableError(f"{url}: {type(error).__name__}: {error}")


def read_object(url: str) -> bytes:
    """The bytes of one object (NotFoundError when absent, UnavailableError when the store fails)."""
    store, key = open_object(url)
    try:
        data = store.get_bytes(key)
    except CascadeError:
        raise
    except Exception as error:  # noqa: BLE001 - botocore's many network/credential errors
        raise _unavailable(url, error) from None
    if data is None:
        from cascade.errors import NotFoundError

        raise NotFoundError(f"{url}: no such object")
    return data


@dataclass
class SyncResult:
    downloaded: list[str] = field(default_factory=list)
    skipped: int = 0
    deleted: list[str] = field(default_factory=list)


def _excluded(rel: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(rel, p) for p in patterns)


def sync_down(url: str, dest: Path, excludes: list[str] | None = None, delete: bool = False) -> SyncResult:
    """Download the prefix ``url`` (a folder: ``.../`` is implied) into ``dest``."""
    store, key = open_object(url.rstrip("/") + "/")
    patterns = list(excludes or [])
    dest = Path(dest)
    result = SyncResult()
    try:
        objects = store.list_objects(key)
        wanted = {k[len(key):]: size for k, size in objects.items() if not _excluded(k[len(key):], patterns)}
        for rel, size in sorted(wanted.items()):
            target = dest / rel
            if target.is_file() and target.stat().st_size == size:
                result.skipped += 1
                continue
            store.get_file(key + rel, target)
            result.downloaded.append(rel)
    except CascadeError:
        raise
    except Exception as error:  # noqa: BLE001 - botocore's many network/credential errors
        raise _unavailable(url, error) from None
    dest.mkdir(parents=True, exist_ok=True)
    if delete:
        for path in sorted(p for p in dest.rglob("*") if p.is_file()):
            rel = path.relative_to(dest).as_posix()
            if rel not in wanted and not _excluded(rel, patterns):
                path.unlink()
                result.deleted.append(rel)
    LOG.info("%s -> %s: %d downloaded, %d unchanged, %d deleted", url, dest, len(result.downloaded),
             result.skipped, len(result.deleted))
    return result
