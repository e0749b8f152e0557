"""``cascade release``: export -> validate -> quality gate -> publish (what CI runs).

1. export (``--data``) or take ``--export``; with ``--sign-key`` sign it (``manifest.sig``);
2. validate: every config.pbtxt parses into Triton's ModelConfig protobuf, the manifest verifies,
   and a real tritonserver started on the export alone answers the contract (smoke) suite;
3. quality gate: the bundle's offline NDCG@10 and recall@100 (the served pipeline on the dataset's
   test split) against the champion's recorded evaluation (``--champion URL``: a publish location,
   its ``LATEST`` bundle's evaluation.json); fails when a metric drops more than its tolerance
   (relative); the report gives every delta;
4. publish (``--publish URL``) with the evaluation, the pointer last; with ``--dataset-url URL``
   the dataset (``--data``) is published first to ``URL/<bundle_id>/`` (``cascade retrain`` grows it).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cascade.bundles.manifest import SIGNATURE_FILE, verify_bundle
from cascade.bundles.tagging import read_config
from cascade.errors import BundleVerificationError, InvalidInputError

LOG = logging.getLogger(__name__)
GATED_METRICS = ("ndcg@10", "recall@100")
EVALUATED_METHOD = "served"  # workflows/evaluate_methods.py: the full served pipeline


@dataclass
class GateResult:
    passed: bool
    champion: str | None
    deltas: dict[str, dict[str, float]] = field(default_factory=dict)  # metric -> candidate/champion/abs/rel/tol
    reason: str = ""


@dataclass
class ReleaseReport:
    bundle_id: str
    export: str
    validated: dict[str, Any]
    evaluation: dict[str, Any]
    gate: GateResult
    published: str | None = None
    dataset_published: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def validate_configs(export_root: Path) -> int:
    """Every config.pbtxt of the export parses into ModelConfig; returns how many."""
    from google.protobuf.text_format import ParseError

    configs = sorted((Path(export_root) / "model_repository").glob("*/config.pbtxt"))
    if not configs:
        raise BundleVerificationError(f"{export_root}/model_repository has no model configs")
    for path in configs:
        try:
            config = read_config(path)
        except ParseError as error:
            raise BundleVerificationError(f"{path}: not a valid Triton ModelConfig: {error}") from None
        if config.name and config.name != path.parent.name:
            raise BundleVerificationError(f"{path}: name {config.name!r} differs from its folder {path.parent.name!r}")
    return len(configs)


def validate_in_server(export_root: Path, bundle_id: str) -> int:
    """Start tritonserver on the export alone and send the smoke (contract) suite; returns requests."""
    from cascade.bundles.smoke import smoke
    from cascade.serving.ports import free_ports
    from cascade.serving.server import TritonServer, TritonServerConfig

    http, grpc, metrics = free_ports(3)
    config = TritonServerConfig(model_repository=Path(export_root) / "model_repository",
                                http_port=http, grpc_port=grpc, metrics_port=metrics, exit_timeout_s=5,
                                ready_timeout_s=600.0)  # a busy node loads slowly; a failed load exits at once
    with TritonServer(config) as server:
        return smoke(server.grpc_url, "recommend", bundle_id, Path(export_root))


def evaluate_bundle(export_root: Path, data: Path, max_users: int | None, n_candidates: int) -> dict[str, Any]:
    """Offline metrics of the bundle's served pipeline (the stage classes over this export) on
    ``data``'s test split (``cascade evaluate --methods served``)."""
    from cascade.workflows.baselines import Catalog, read_interactions
    from cascade.workflows.dataset import load_dataset
    from cascade.workflows.evaluate import evaluate
    from cascade.workflows.evaluate_methods import EvaluationContext, build_methods

    paths, info = load_dataset(data)
    ctx = EvaluationContext(data=Path(data), info=info, train=read_interactions(paths.train),
                            catalog=Catalog.from_dataset(data), export_loader=lambda: Path(export_root))
    recommenders = build_methods([EVALUATED_METHOD], ctx, explicit=True)
    report = evaluate(data, recommenders, ks=(10, 100), max_users=max_users, seed=0, progress=False)
    metrics = report.methods[0].metrics
    return {"method": EVALUATED_METHOD, "metrics": {m: float(metrics[m]) for m in GATED_METRICS},
            "n_users": report.n_users, "dataset": report.dataset["name"],
            "dataset_hash": report.dataset["content_hash"], "created_at": report.created_at}


def quality_gate(evaluation: dict[str, Any], champion_url: str | None, tolerances: dict[str, float]) -> GateResult:
    """Compare with the champion's recorded evaluation; relative drop > tolerance fails."""
    from cascade.bundles.publish import open_store

    if champion_url is None:
        return GateResult(True, None, reason="no --champion: nothing to compare with (first release)")
    store = open_store(champion_url)
    champion = store.latest()
    if champion is None:
        return GateResult(True, None, reason=f"{champion_url} has no LATEST yet (first release)")
    recorded = store.evaluation(champion)
    if recorded is None:
        return GateResult(False, champion, reason=f"champion {champion} at {champion_url} has no evaluation.json")
    deltas, failed = {}, []
    for metric in GATED_METRICS:
        new, old = evaluation["metrics"][metric], float(recorded["metrics"][metric])
        rel = (new - old) / old if old else 0.0
        deltas[metric] = {"candidate": new, "champion": old, "abs": new - old, "rel": rel, "tolerance": tolerances[metric]}
        if rel < -tolerances[metric]:
            failed.append(f"{metric} {new:.4f} vs champion {old:.4f} ({rel:+.1%}, tolerance -{tolerances[metric]:.1%})")
    if failed:
        return GateResult(False, champion, deltas, "quality gate failed: " + "; ".join(failed))
    return GateResult(True, champion, deltas, "quality gate passed")


def release(
    *,
    data: Path | None,
    export: Path | None,
    out: Path | None,
    champion: str | None,
    publish_url: str | None,
    tolerances: dict[str, float],
    max_users: int | None = None,
    server_check: bool = True,
    device: str | None = None,
    dataset_url: str | None = None,
    sign_key: Path | None = None,
) -> ReleaseReport:
    from cascade.online.export_layout import ExportLayout

    if data is None and export is None:
        raise InvalidInputError("give --data DIR (export it) or --export EXPORT (already exported)")
    if data is None:
        raise InvalidInputError("--export without --data: the quality gate evaluates on the dataset's test split; "
                                "pass the dataset with --data DIR too")
    if dataset_url and not publish_url:
        raise InvalidInputError("--dataset-url publishes the dataset beside a published bundle: give --publish URL too")
    for metric, tolerance in tolerances.items():
        if not 0.0 <= tolerance < 1.0:
            raise InvalidInputError(f"tolerance for {metric}: expected a fraction in [0, 1), got {tolerance}")
    if export is None:
        from cascade.paths import build_dir
        from cascade.workflows.export import export_repository

        export = export_repository(data, out or build_dir() / "release" / "export").root
    if sign_key is not None:  # before verification: a configured CASCADE_BUNDLE_PUBLIC_KEY then proves the pair matches
        from cascade.bundles.signing import sign_manifest

        sign_manifest(export, sign_key)
    manifest = verify_bundle(export)
    from cascade.bundles.publish import check_publishable

    check_publishable(export, device)  # before the server check and the evaluation: fail fast
    validated: dict[str, Any] = {"configs": validate_configs(export), "manifest_files": len(manifest.files),
                                 "signed": (Path(export) / SIGNATURE_FILE).is_file()}
    if server_check:
        validated["contract_requests"] = validate_in_server(export, manifest.bundle_id)
    evaluation = evaluate_bundle(export, data, max_users, ExportLayout(export).manifest().n_candidates)
    evaluation["bundle_id"] = manifest.bundle_id
    gate = quality_gate(evaluation, champion, tolerances)
    report = ReleaseReport(manifest.bundle_id, str(export), validated, evaluation, gate)
    if gate.passed and publish_url:
        from cascade.bundles.publish import publish

        if dataset_url:  # before the pointer moves: a served bundle always has its dataset
            from cascade.events.datasets import publish_dataset

            report.dataset_published = publish_dataset(data, dataset_url, manifest.bundle_id)
        publish(export, publish_url, evaluation, device=device)
        report.published = publish_url
    return report
