"""The bundle manifest ``EXPORT/manifest.json`` (format 1, docs/DESIGN.md "Round 3 contracts").

``{"format_version": 1, "bundle_id", "code_version", "created_at", "files": {relpath: sha256}}``
over every file of the export except ``manifest.json`` and ``manifest.sig``; keys sorted, JSON
written with ``sort_keys=True, indent=2``. The signature (:mod:`cascade.bundles.signing`) covers
the exact bytes of this file, so the digests bind every file of the export to the signature.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from cascade.errors import BundleVerificationError, NotFoundError

MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.sig"
FORMAT_VERSION = 1
_EXCLUDED = frozenset({MANIFEST_NAME, SIGNATURE_NAME})
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def export_files(export_dir: Path) -> dict[str, Path]:
    """Every regular file under ``export_dir`` by POSIX relative path (manifest files excluded).

    Symbolic links are followed only when they stay inside the export; one pointing outside is
    refused, since the digest would then vouch for a file the bundle does not contain.
    """
    root = Path(export_dir).resolve()
    files: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if path.is_dir():
            continue
        rel = path.relative_to(root).as_posix()
        if rel in _EXCLUDED:
            continue
        if path.is_symlink() and not path.resolve().is_relative_to(root):
            raise BundleVerificationError(
                f"{rel}: symbolic link to {path.resolve()} leaves the export {root}; a bundle "
                "must contain its files"
            )
        files[rel] = path
    return files


@dataclass(frozen=True)
class BundleManifest:
    bundle_id: str
    code_version: str
    created_at: str
    files: dict[str, str]
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        body = {"format_version": self.format_version, "bundle_id": self.bundle_id,
                "code_version": self.code_version, "created_at": self.created_at,
                "files": dict(sorted(self.files.items()))}
        return json.dumps(body, sort_keys=True, indent=2) + "\n"

    @classmethod
    def from_bytes(cls, data: bytes, where: str = MANIFEST_NAME) -> BundleManifest:
        try:
            body: Any = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BundleVerificationError(f"{where}: not valid JSON ({exc})") from exc
        if not isinstance(body, dict) or body.get("format_version") != FORMAT_VERSION:
            got = body.get("format_version") if isinstance(body, dict) else type(body).__name__
            raise BundleVerificationError(f"{where}: format_version: expected {FORMAT_VERSION}, got {got!r}")
        files = body.get("files")
        if not isinstance(files, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and len(v) == 64 for k, v in files.items()
        ):
            raise BundleVerificationError(f"{where}: files: expected an object of relpath -> sha256 hex")
        for key in ("bundle_id", "code_version", "created_at"):
            if not isinstance(body.get(key), str):
                raise BundleVerificationError(f"{where}: {key}: expected a string, got {body.get(key)!r}")
        return cls(bundle_id=body["bundle_id"], code_version=body["code_version"],
                   created_at=body["created_at"], files=dict(files))


def build_manifest(export_dir: Path, bundle_id: str, code_version: str,
                   created_at: str | None = None) -> BundleManifest:
    files = {rel: sha256_file(path) for rel, path in export_files(export_dir).items()}
    stamp = created_at or datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return BundleManifest(bundle_id=bundle_id, code_version=code_version, created_at=stamp, files=files)


def write_manifest(export_dir: Path, bundle_id: str, code_version: str) -> Path:
    """Write ``EXPORT/manifest.json`` (replacing one that exists) and return its path."""
    manifest = build_manifest(export_dir, bundle_id, code_version)
    path = Path(export_dir) / MANIFEST_NAME
    tmp = path.with_name(f".{MANIFEST_NAME}.tmp")
    tmp.write_text(manifest.to_json())
    tmp.replace(path)
    return path


def read_manifest(export_dir: Path) -> tuple[BundleManifest, bytes]:
    """The parsed manifest and its exact bytes (what the signature covers)."""
    path = Path(export_dir) / MANIFEST_NAME
    if not path.is_file():
        raise NotFoundError(f"{path} is missing: an export carries manifest.json (written by `cascade export`)")
    data = path.read_bytes()
    return BundleManifest.from_bytes(data, str(path)), data


def verify_files(export_dir: Path, manifest: BundleManifest, absent_ok: Iterable[str] = ()) -> None:
    """Every file of the export is listed with its digest, and every listed file is there.

    ``absent_ok``: glob patterns of listed files a sync may leave out on purpose (e.g.
    ``feature_repo/data/online.db``); a file that IS present is always checked.
    Raises BundleVerificationError naming the first problem files.
    """
    patterns = tuple(absent_ok)
    present = export_files(export_dir)
    extra = sorted(set(present) - set(manifest.files))
    missing = sorted(rel for rel in set(manifest.files) - set(present)
                     if not any(fnmatch(rel, p) for p in patterns))
    changed = sorted(rel for rel, path in present.items()
                     if rel in manifest.files and sha256_file(path) != manifest.files[rel])
    problems = []
    if changed:
        problems.append(f"content differs from manifest.json: {', '.join(changed[:5])}")
    if extra:
        problems.append(f"not listed in manifest.json: {', '.join(extra[:5])}")
    if missing:
        problems.append(f"listed in manifest.json but missing: {', '.join(missing[:5])}")
    if problems:
        raise BundleVerificationError(f"export {export_dir} does not match its manifest: " + "; ".join(problems))
