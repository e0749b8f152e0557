"""Assemble a complete, versioned model repository for one dataset (see
:mod:`cascade.online.export_layout` for the layout).

Steps: make sure the models are trained (cached by input hash), generate the Feast repo for the
dataset and apply + materialize it (which publishes the item snapshot), copy the artifacts and
the model sources, write ``export.json``. Everything is written to a temporary sibling folder and
renamed into place at the end, so a failed export never damages a previous one; the path of the
newest export is recorded for ``cascade serve``.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cascade import __version__
from cascade.bundles.manifest import write_manifest
from cascade.bundles.tagging import apply_bundle_tags
from cascade.business.config import DEFAULT_RULES_FILE, BusinessRules
from cascade.cache import hash_files, inputs_hash, is_fresh, mark_done, replace_dir
from cascade.errors import InvalidInputError, NotFoundError
from cascade.online import device as device_module
from cascade.bundles import tagging as tagging_module
from cascade.online import warmup as warmup_module
from cascade.online.device import apply_device, check_device
from cascade.online.export_layout import DEFAULT_CANDIDATES, RULES_IN_EXPORT, ExportLayout, ExportManifest
from cascade.online.warmup import write_warmups
from cascade.paths import MODEL_REPOSITORY_SOURCES, latest_export_pointer
from cascade.workflows.dataset import DatasetInfo

LOG = logging.getLogger(__name__)
ARTIFACT_PARTS = ("workflow", "retrieval", "ranking", "index")
OPTIONAL_ARTIFACT_PARTS = ("candidates",)  # item-to-item neighbours; without them retrieval is ANN + popular
STAGES = ("candidates", "ranking")


@dataclass(frozen=True)
class ExportResult:
    root: Path
    manifest: ExportManifest
    reused: bool


def _copy_tree(source: Path, target: Path) -> None:
    """Copy a folder, hard-linking files where the filesystem allows (artifacts are immutable)."""
    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link_or_copy,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".gitkeep"))


def _copy_model_sources(target: Path, rules_file: Path) -> None:
    for model_dir in sorted(MODEL_REPOSITORY_SOURCES.iterdir()):
        if not (model_dir / "config.pbtxt").is_file():
            continue
        shutil.copytree(model_dir, target / model_dir.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".gitkeep"))
        (target / model_dir.name / "1").mkdir(exist_ok=True)
    shutil.copy2(rules_file, target / RULES_IN_EXPORT.relative_to("model_repository"))


def _version(dataset_name: str, key: str) -> str:
    """The bundle id: ``<dataset_name>-<UTC yyyymmddTHHMMSSZ>-<inputs hash[:8]>`` (docs/DESIGN.md)."""
    return f"{dataset_name}-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}-{key[:8]}"


def export_repository(
    data_dir: Path,
    out_dir: Path,
    *,
    artifacts_dir: Path | None = None,
    n_candidates: int = DEFAULT_CANDIDATES,
    rules_file: Path | None = None,
    online_store: str = "sqlite",
    redis_connection: str | None = None,
    force: bool = False,
    record_latest: bool = True,
    device: str = "cpu",
    allow_cpu_fallback: bool = False,
) -> ExportResult:
    """Build (or reuse) the export for ``data_dir`` at ``out_dir``. ``record_latest``: make it the
    export ``cascade serve`` picks by default (evaluation's own exports do not). ``device`` /
    ``allow_cpu_fallback``: placement of the GPU-capable stages (:mod:`cascade.online.device`)."""
    from cascade.features.repo import generate_feature_repo
    from cascade.features.store import apply, materialize
    from cascade.workflows.artifacts import train_all

    device = check_device(device)
    if allow_cpu_fallback and device != "gpu":
        raise InvalidInputError("--allow-cpu-fallback only applies to --device gpu")
    if not 1 <= n_candidates <= 10_000:
        raise InvalidInputError(f"--n-candidates must be in [1, 10000], got {n_candidates}")
    data_dir = Path(data_dir).resolve()
    out_dir = Path(out_dir).resolve()
    info = DatasetInfo.load(data_dir)
    rules_file = Path(rules_file or DEFAULT_RULES_FILE).resolve()
    BusinessRules.load(rules_file)  # fail before any work on a bad rules file
    artifacts = Path(artifacts_dir).resolve() if artifacts_dir else train_all(data_dir, log=LOG.info)[0].root
    for part in ARTIFACT_PARTS:
        if not (artifacts / part).is_dir():
            raise NotFoundError(f"artifacts {artifacts} lack {part}/ (run `cascade train --data {data_dir}`)")

    key = inputs_hash(
        dataset=info.content_hash,
        artifacts=hash_files([artifacts / p for p in ARTIFACT_PARTS + OPTIONAL_ARTIFACT_PARTS
                              if (artifacts / p).exists()]),
        sources=hash_files([MODEL_REPOSITORY_SOURCES, Path(warmup_module.__file__), Path(tagging_module.__file__),
                            Path(device_module.__file__)]),
        device=device,
        allow_cpu_fallback=allow_cpu_fallback,
        rules=hash_files([rules_file]),
        n_candidates=n_candidates,
        online_store=online_store,
        redis=redis_connection,
        code=__version__,
    )
    if not force and is_fresh(out_dir, key):
        LOG.info("export %s is up to date", out_dir)
        if record_latest:
            _record_latest(out_dir)
        return ExportResult(out_dir, ExportLayout(out_dir).manifest(), reused=True)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        layout = ExportLayout(tmp)
        layout.artifacts.mkdir()
        for part in ARTIFACT_PARTS + tuple(p for p in OPTIONAL_ARTIFACT_PARTS if (artifacts / p).is_dir()):
            _copy_tree(artifacts / part, layout.artifacts / part)
        generate_feature_repo(data_dir, layout.feature_repo, online_store=online_store, redis_connection=redis_connection)
        apply(layout.feature_repo)
        materialized = materialize(layout.feature_repo)
        layout.model_repository.mkdir()
        _copy_model_sources(layout.model_repository, rules_file)
        manifest = ExportManifest(
            version=_version(info.name, key),
            dataset_name=info.name,
            dataset_hash=info.content_hash,
            artifacts_key=artifacts.name,
            snapshot_version=str(getattr(materialized, "snapshot_version", "")),
            n_candidates=n_candidates,
            code_version=__version__,
            device=device,
            allow_cpu_fallback=allow_cpu_fallback,
        )
        layout.manifest_path.write_text(manifest.model_dump_json(indent=2))
        apply_bundle_tags(layout.model_repository, manifest.version)  # before the warm-ups, which send the tags
        write_warmups(layout)  # needs the manifest and artifacts in place
        apply_device(layout.model_repository, device, allow_cpu_fallback)
        mark_done(tmp, key, version=manifest.version)
        write_manifest(tmp, manifest.version, manifest.code_version)  # last: sha256 of every file
        _swap_into_place(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if record_latest:
        _record_latest(out_dir)
    return ExportResult(out_dir, manifest, reused=False)


def _swap_into_place(tmp: Path, out_dir: Path) -> None:
    if out_dir.exists() and not (out_dir / "export.json").is_file() and any(out_dir.iterdir()):
        raise InvalidInputError(f"--out {out_dir} exists and is not a cascade export; refusing to replace it")
    replace_dir(tmp, out_dir)


def _record_latest(out_dir: Path) -> None:
    pointer = latest_export_pointer()
    pointer.parent.mkdir(parents=True, exist_ok=True)
    pointer.write_text(str(out_dir) + "\n")

