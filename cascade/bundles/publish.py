"""Publish bundles to an object store, ``file://DIR`` or ``s3://BUCKET/PREFIX``:

```
<root>/<bundle_id>/...            every file of the export, manifest.sig, then manifest.json
<root>/<bundle_id>/evaluation.json the release's recorded evaluation (the next release's champion)
<root>/LATEST                      text: the bundle id to serve, written LAST
```
A reader that follows ``LATEST`` therefore never sees a partial bundle, and a failed publish
leaves the previous ``LATEST`` in place. S3 uses boto3 (``pip install 'cascade[release]'``);
``AWS_ENDPOINT_URL`` points it at an S3-compatible endpoint (the tests use moto's server).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from abc import ABC, abstractmethod
from pathlib import Path
from urllib.parse import urlparse

from cascade.bundles.manifest import EVALUATION_FILE, MANIFEST_FILE, SIGNATURE_FILE, verify_bundle
from cascade.errors import InvalidInputError, NotFoundError

POINTER = "LATEST"
EVALUATION = EVALUATION_FILE  # not listed in the manifest: written after signing


class Store(ABC):
    url: str

    @abstractmethod
    def put_file(self, key: str, path: Path) -> None: ...

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def get_bytes(self, key: str) -> bytes | None:
        """The object's bytes, None when it does not exist."""

    @abstractmethod
    def list_objects(self, prefix: str) -> dict[str, int]:
        """Every object whose key starts with ``prefix``: key -> size in bytes."""

    @abstractmethod
    def get_file(self, key: str, path: Path) -> None:
        """Download one object into ``path`` (replaced in one rename)."""

    def publish_bundle(self, export_root: Path, bundle_id: str, files: list[str], evaluation: dict | None) -> None:
        for rel in files:
            self.put_file(f"{bundle_id}/{rel}", export_root / rel)
        if (export_root / SIGNATURE_FILE).is_file():
            self.put_file(f"{bundle_id}/{SIGNATURE_FILE}", export_root / SIGNATURE_FILE)
        self.put_file(f"{bundle_id}/{MANIFEST_FILE}", export_root / MANIFEST_FILE)
        if evaluation is not None:
            self.put_bytes(f"{bundle_id}/{EVALUATION}", json.dumps(evaluation, indent=2).encode())

    def latest(self) -> str | None:
        data = self.get_bytes(POINTER)
        return data.decode().strip() or None if data is not None else None

    def evaluation(self, bundle_id: str) -> dict | None:
        data = self.get_bytes(f"{bundle_id}/{EVALUATION}")
        return json.loads(data) if data is not None else None


class FileStore(Store):
    def __init__(self, root: Path, url: str) -> None:
        self.root, self.url = Path(root), url

    def _write(self, key: str, write) -> None:
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        write(tmp)
        os.replace(tmp, target)

    def put_file(self, key: str, path: Path) -> None:
        self._write(key, lambda tmp: shutil.copyfile(path, tmp))

    def put_bytes(self, key: str, data: bytes) -> None:
        self._write(key, lambda tmp: tmp.write_bytes(data))

    def get_bytes(self, key: str) -> bytes | None:
        path = self.root / key
        return path.read_bytes() if path.is_file() else None

    def list_objects(self, prefix: str) -> dict[str, int]:
        base = self.root / prefix
        folder = base if prefix.endswith("/") or base.is_dir() else base.parent
        if not folder.is_dir():
            return {}
        out = {}
        for path in folder.rglob("*"):
            key = path.relative_to(self.root).as_posix()
            if path.is_file() and key.startswith(prefix) and ".tmp-" not in path.name:
                out[key] = path.stat().st_size
        return out

    def get_file(self, key: str, path: Path) -> None:
        source = self.root / key
        if not source.is_file():
            raise NotFoundError(f"{self.url}: no object {key}")
        _replace(path, lambda tmp: shutil.copyfile(source, tmp))


class S3Store(Store):
    def __init__(self, bucket: str, prefix: str, url: str) -> None:
        try:
            import boto3
        except ImportError:
            raise NotFoundError(f"{url}: publishing to S3 needs boto3 (pip install 'cascade[release]')") from None
        self.bucket, self.prefix, self.url = bucket, prefix.strip("/"), url
        self.client = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_file(self, key: str, path: Path) -> None:
        self.client.upload_file(str(path), self.bucket, self._key(key))

    def put_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def get_bytes(self, key: str) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise

    def list_objects(self, prefix: str) -> dict[str, int]:
        out = {}
        start = len(self.prefix) + 1 if self.prefix else 0
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            for item in page.get("Contents", []):
                out[item["Key"][start:]] = int(item["Size"])
        return out

    def get_file(self, key: str, path: Path) -> None:
        _replace(path, lambda tmp: self.client.download_file(self.bucket, self._key(key), str(tmp)))


def _replace(path: Path, write) -> None:
    """Write ``path`` through a temporary sibling and one rename (never a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def open_store(url: str) -> Store:
    """``file:///abs/dir`` or ``s3://bucket[/prefix]``."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise InvalidInputError(f"{url!r}: expected file:///absolute/path")
        return FileStore(Path(parsed.path), url)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise InvalidInputError(f"{url!r}: expected s3://bucket[/prefix]")
        return S3Store(parsed.netloc, parsed.path, url)
    raise InvalidInputError(f"{url!r}: expected a file:///... or s3://bucket/prefix URL")


DEVICES = ("cpu", "gpu")
# `password: x`, `password=x` or `requirepass x` with a literal value (a ${ENV} reference is fine)
_LITERAL_SECRET = re.compile(r"""(password|requirepass)\s*[=:]\s*["']?[^$\s"']""", re.IGNORECASE)


def check_publishable(export_root: Path, device: str | None = None) -> None:
    """What the cluster must never receive: a feature_store.yaml with a literal Redis password (the
    AUTH token lives in the cluster's Secret; the file is deployment state the manifest does not
    pin), or, with ``device``, an export made for another device (``export.json`` "device",
    ``cascade export --device``; the eks-gpu overlay needs gpu)."""
    export_root = Path(export_root)
    store_yaml = export_root / "feature_repo" / "feature_store.yaml"
    if store_yaml.is_file() and _LITERAL_SECRET.search(store_yaml.read_text()):
        raise InvalidInputError(
            f"{store_yaml} holds a literal Redis password; export with --redis-connection HOST:PORT "
            "(the password is read at run time from CASCADE_REDIS_PASSWORD[_FILE]) so no secret is published")
    if device is not None:
        if device not in DEVICES:
            raise InvalidInputError(f"device: expected one of {', '.join(DEVICES)}, got {device!r}")
        exported = json.loads((export_root / "export.json").read_text()).get("device", "cpu")
        if exported != device:
            raise InvalidInputError(f"{export_root} was exported for device {exported!r}, not {device!r} "
                                    f"(run `cascade export --device {device}`)")


def publish(export_root: Path, url: str, evaluation: dict | None = None, device: str | None = None) -> str:
    """Verify the bundle, upload it, then point ``LATEST`` at it. Returns the bundle id."""
    manifest = verify_bundle(export_root)
    check_publishable(export_root, device)
    store = open_store(url)
    store.publish_bundle(Path(export_root), manifest.bundle_id, list(manifest.files), evaluation)
    store.put_bytes(POINTER, (manifest.bundle_id + "\n").encode())  # last
    return manifest.bundle_id
