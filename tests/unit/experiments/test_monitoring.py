"""The experiments dashboard and alerts name only metrics the router exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from cascade.experiments.router import METRICS

MONITORING = Path(__file__).resolve().parents[3] / "k8s" / "monitoring"
EXPORTED = {name for name, _ in METRICS.values()} | {"cascade_experiment_share"}


def _names(expr: str) -> set[str]:
    return {re.sub(r"_(bucket|sum|count)$", "", m) for m in re.findall(r"cascade_experiment_[a-z_]+", expr)}


def test_dashboard_has_a_row_per_variant_on_router_metrics() -> None:
    dashboard = json.loads((MONITORING / "experiments-dashboard.json").read_text())
    rows = [p for p in dashboard["panels"] if p["type"] == "row"]
    assert rows and rows[0]["repeat"] == "variant"
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p.get("targets", []))
    assert _names(exprs) and _names(exprs) <= EXPORTED
    assert 'variant="$variant"' in exprs


def test_alerts_cover_each_guardrail() -> None:
    rule = yaml.safe_load((MONITORING / "experiments-prometheusrule.yaml").read_text())
    alerts = {r["alert"]: r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert set(alerts) == {"CascadeExperimentTreatmentErrors", "CascadeExperimentTreatmentSlow",
                           "CascadeExperimentTreatmentDegraded", "CascadeExperimentSampleRatioMismatch"}
    for expr in alerts.values():
        assert _names(expr) <= EXPORTED, _names(expr) - EXPORTED
    assert "experiments-prometheusrule.yaml" in (MONITORING / "kustomization.yaml").read_text()
