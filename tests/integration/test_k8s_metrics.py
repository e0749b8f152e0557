"""The metric names k8s/ scales and alerts on are ones a running tritonserver really exports.

The HPA's custom metric comes from a prometheus-adapter rule whose source series must appear on
the server's /metrics; so must the per-model Triton series used by the alerts and dashboard
(except GPU series, absent on a CPU machine, and latency summaries, which need
--metrics-config=summary_latencies=true that the test server does not set)."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

K8S = Path(__file__).resolve().parents[2] / "k8s"
METRIC_NAME = re.compile(r"\b(nv_[a-z0-9_]+)")
NOT_ON_A_CPU_TEST_SERVER = re.compile(r"^nv_gpu_|_summary_us$")


def exported_metric_names(metrics_url: str) -> set[str]:
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    samples = {ln.split("{", 1)[0].split(" ", 1)[0] for ln in text.splitlines() if ln and not ln.startswith("#")}
    return {s for s in samples if s}


def hpa_source_series() -> tuple[str, set[str]]:
    """(custom metric name the HPA uses, Triton series its adapter rule reads)."""
    hpa = yaml.safe_load((K8S / "base" / "hpa.yaml").read_text())
    name = hpa["spec"]["metrics"][0]["pods"]["metric"]["name"]
    values: dict[str, Any] = yaml.safe_load((K8S / "monitoring" / "prometheus-adapter-values.yaml").read_text())
    (rule,) = [r for r in values["rules"]["custom"] if r["name"]["as"] == name]
    return name, set(METRIC_NAME.findall(rule["seriesQuery"])) | set(METRIC_NAME.findall(rule["metricsQuery"]))


def alert_and_dashboard_series() -> set[str]:
    texts = [(K8S / "monitoring" / "prometheusrule.yaml").read_text()]
    dashboard = json.loads((K8S / "monitoring" / "grafana-dashboard.json").read_text())
    texts += [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    return {m for t in texts for m in METRIC_NAME.findall(t) if not NOT_ON_A_CPU_TEST_SERVER.search(m)}


def test_hpa_metric_source_series_is_exported_by_triton(echo_server: Any) -> None:
    exported = exported_metric_names(echo_server.metrics_url)
    name, sources = hpa_source_series()
    assert sources, f"adapter rule for {name} names no Triton series"
    missing = sources - exported
    assert not missing, f"HPA metric {name} reads {sorted(missing)}, not on {echo_server.metrics_url}"


def test_alert_and_dashboard_series_are_exported_by_triton(echo_server: Any) -> None:
    exported = exported_metric_names(echo_server.metrics_url)
    used = alert_and_dashboard_series()
    assert "nv_inference_request_success" in used
    assert not used - exported, sorted(used - exported)
