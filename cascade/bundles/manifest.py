"""The bundle manifest ``EXPORT/manifest.json`` (docs/DESIGN.md, "Round 3 contracts"):
sha256 of every file of an export, written last by ``cascade export``, verified before a bundle
is loaded (``cascade rollout``), published (``cascade release``) or activated (the k8s sidecar).

Deployment-local state is hashed at export but not verified afterwards (:data:`MUTABLE`): the
SQLite online store (Feast writes it), the item snapshots (the materialization CronJob publishes
new ones) and ``feature_store.yaml`` (the sidecar swaps in the cluster's Redis settings).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, Field

from cascade.errors import BundleVerificationError

MANIFEST_FILE = "manifest.json"
SIGNATURE_FILE = "manifest.sig"
FORMAT_VERSION = 1
#: the release's recorded evaluation, published beside the bundle AFTER it was signed
#: (cascade.bundles.publish.EVALUATION): release metadata for the next gate, never loaded by a server
EVALUATION_FILE = "evaluation.json"
NOT_LISTED = frozenset({MANIFEST_FILE, SIGNATURE_FILE, EVALUATION_FILE})
# registry.db and .cascade/ record materialization intervals: every (re-)materialization rewrites them
MUTABLE = ("feature_repo/data/online.db", "feature_repo/item_snapshot/", "feature_repo/feature_store.yaml",
           "feature_repo/data/registry.db", "feature_repo/.cascade/")
IGNORED_PARTS = frozenset({"__pycache__"})
IGNORED_SUFFIXES = (".pyc",)


class BundleManifest(BaseModel):
    format_version: int = FORMAT_VERSION
    bundle_id: str
    code_version: str
    created_at: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    files: dict[str, str]

    def to_json(self) -> str:
        return json.dumps(self.model_dump(), sort_keys=True, indent=2) + "\n"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _listed(rel: str) -> bool:
    parts = rel.split("/")
    return rel not in NOT_LISTED and not IGNORED_PARTS.intersection(parts) and not rel.endswith(IGNORED_SUFFIXES)


def bundle_files(export_dir: Path) -> list[str]:
    """Relative paths (``/``-separated, sorted) of the files a manifest covers."""
    root = Path(export_dir)
    rels = (p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    return sorted(rel for rel in rels if _listed(rel))


def is_mutable(rel: str) -> bool:
    return any(rel == m or (m.endswith("/") and rel.startswith(m)) for m in MUTABLE)


def write_manifest(export_dir: Path, bundle_id: str, code_version: str) -> BundleManifest:
    """Hash every file of ``export_dir`` and write ``manifest.json`` (call it last)."""
    root = Path(export_dir)
    manifest = BundleManifest(
        bundle_id=bundle_id, code_version=code_version,
        files={rel: sha256_file(root / rel) for rel in bundle_files(root)},
    )
    tmp = root / f".{MANIFEST_FILE}.tmp"
    tmp.write_text(manifest.to_json())
    tmp.replace(root / MANIFEST_FILE)
    return manifest


def load_manifest(export_dir: Path) -> BundleManifest:
    path = Path(export_dir) / MANIFEST_FILE
    if not path.is_file():
        raise BundleVerificationError(f"{path} is missing: not a bundle (re-export with `cascade export`)")
    try:
        manifest = BundleManifest.model_validate_json(path.read_text())
    except ValueError as error:
        raise BundleVerificationError(f"{path}: not a valid bundle manifest: {error}") from None
    if manifest.format_version != FORMAT_VERSION:
        raise BundleVerificationError(
            f"{path}: format_version {manifest.format_version} is not supported (expected {FORMAT_VERSION})"
        )
    return manifest


def verify_files(export_dir: Path, manifest: BundleManifest) -> None:
    """Every listed file present with its sha256, no unlisted file (mutable state excepted)."""
    root = Path(export_dir)
    problems: list[str] = []
    for rel, expected in manifest.files.items():
        if is_mutable(rel):
            continue
        path = root / rel
        if not path.is_file():
            problems.append(f"{rel}: missing")
        elif sha256_file(path) != expected:
            problems.append(f"{rel}: sha256 differs from manifest.json")
    extra = [rel for rel in bundle_files(root) if rel not in manifest.files and not is_mutable(rel)]
    problems += [f"{rel}: not listed in manifest.json" for rel in extra]
    if problems:
        shown = "; ".join(problems[:5]) + (f"; ... {len(problems) - 5} more" if len(problems) > 5 else "")
        raise BundleVerificationError(f"bundle {manifest.bundle_id} at {root} fails verification: {shown}")


def parse_version(version: str) -> tuple[int, int]:
    try:
        major, minor = (int(x) for x in version.split(".")[:2])
    except ValueError:
        raise BundleVerificationError(f"code_version {version!r}: expected MAJOR.MINOR[.PATCH]") from None
    return major, minor


def check_code_compatible(manifest: BundleManifest, installed: str | None = None) -> None:
    """The installed ``cascade`` can serve a bundle exported by the same MAJOR.MINOR (the stage
    tensors and model.py adapters may change between minor versions while the major is 0)."""
    from cascade import __version__

    installed = installed or __version__
    if parse_version(manifest.code_version) != parse_version(installed):
        raise BundleVerificationError(
            f"bundle {manifest.bundle_id} was exported by cascade {manifest.code_version}; the installed "
            f"cascade {installed} serves bundles of {'.'.join(map(str, parse_version(installed)))}.x only "
            "(re-export it with this code, or roll out a matching server image)"
        )


def verify_bundle(export_dir: Path, *, public_key: Path | None = None) -> BundleManifest:
    """Manifest, file hashes, code compatibility and, with ``public_key`` (default: the path in
    ``CASCADE_BUNDLE_PUBLIC_KEY``, if set), the signature (``cascade.bundles.signing``)."""
    manifest = load_manifest(export_dir)
    verify_files(export_dir, manifest)
    check_code_compatible(manifest)
    if public_key is None:  # issue 14: a configured key (CASCADE_BUNDLE_PUBLIC_KEY) is enforced everywhere
        from cascade.bundles.signing import configured_public_key

        public_key = configured_public_key()
    if public_key is not None:
        verify_signature_hook(Path(export_dir), Path(public_key))
    return manifest


def verify_signature_hook(export_dir: Path, public_key: Path) -> None:
    try:
        from cascade.bundles.signing import verify_signature  # owned by issue 14
    except ImportError:
        raise BundleVerificationError(
            f"--public-key {public_key} given but cascade.bundles.signing is not installed in this build"
        ) from None
    verify_signature(export_dir, public_key)
