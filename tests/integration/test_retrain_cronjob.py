"""The retrain CronJob (k8s/base/retrain-cronjob.yaml) end to end: the containers' commands and
environment are read from the rendered dev overlay and run here in the job's order, with /work and
/tmp mapped to a temporary folder and Kubernetes' $(VAR) expansion applied, against moto's S3
EMULATOR (a local server process, fixture ``moto_s3``; real S3 cannot be reached here) standing in
for the bucket. `aws` is the real aws-cli (v1 from PyPI; the job's image runs v2, whose `s3 cp|sync`
are the same commands), `cascade` the real CLI: the release step starts a real tritonserver.

Before the first night: a bundle released the way CI releases it (.github/workflows/model-release.yml:
`cascade release ... --dataset-url`, which publishes its dataset beside it) and events the Triton
pods' `interactions` model logged to S3 (its writer, :class:`cascade.events.log.InteractionLog`).
After the night: the retrained bundle passed the gate and is LATEST, its grown dataset (train +
the events, the champion's test split) is where the next night's export-pull reads it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CONFIG = {"EXPORT_BUCKET": "models", "EXPORT_PREFIX": "exports", "INTERACTION_LOG": "s3://models/interactions"}
NEW_USER = 10**9 + 11


def cronjob_containers() -> list[dict]:
    proc = subprocess.run([str(BIN / "kubectl"), "kustomize", str(ROOT / "k8s" / "overlays" / "dev")],
                          capture_output=True, text=True, timeout=120, check=True)
    (job,) = [d for d in yaml.safe_load_all(proc.stdout)
              if d and d["kind"] == "CronJob" and d["metadata"]["name"] == "cascade-retrain"]
    spec = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return spec["initContainers"] + spec["containers"]  # init containers in order, then the main one


def run_container(container: dict, root: Path) -> subprocess.CompletedProcess[str]:
    """The container's command with its env (config-map keys from CONFIG), each volume mount
    (/work, /tmp, the signing-key Secret, the public-key ConfigMap) at ``root/<volume name>``."""
    mounts = sorted(container.get("volumeMounts", []), key=lambda m: -len(m["mountPath"]))
    volume = {m["mountPath"]: m["name"] for m in mounts}
    pattern = re.compile(r"(?<![\w.])(" + "|".join(re.escape(p) for p in volume) + r")(?=/|\b)") if volume else None

    def local(text: str) -> str:  # one pass: a replaced path (under /tmp here) is not rewritten again
        return pattern.sub(lambda m: str(root / volume[m.group(1)]), text) if pattern else text

    env = dict(os.environ, PATH=f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}")  # AWS_*: the emulator
    for item in container.get("env", []):
        ref = item.get("valueFrom", {}).get("configMapKeyRef")
        env[item["name"]] = CONFIG[ref["key"]] if ref else local(item["value"])
    command = [local(re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], arg)) for arg in container["command"]]
    for mount in mounts:
        (root / mount["name"]).mkdir(parents=True, exist_ok=True)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)


def s3_text(endpoint: str, key: str) -> str | None:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint)
    try:
        return client.get_object(Bucket="models", Key=key)["Body"].read().decode()
    except client.exceptions.NoSuchKey:
        return None


def test_retrain_cronjob_end_to_end(tiny_trained: tuple[Path, Path], moto_s3: str, tmp_path: Path) -> None:
    from cascade.events.batch import EventBatch
    from cascade.events.log import InteractionLog
    from cascade.workflows.export import export_repository

    from cascade.bundles.signing import generate_keys, verify_export

    data, artifacts = tiny_trained
    keys = generate_keys(tmp_path / "keys")  # the platform's pair: private half in a Secret, public in a ConfigMap
    export = export_repository(data, tmp_path / "export0", artifacts_dir=artifacts).root
    first = subprocess.run(
        [str(BIN / "cascade"), "release", "--export", str(export), "--data", str(data),
         "--champion", "s3://models/exports", "--publish", "s3://models/exports",
         "--dataset-url", "s3://models/datasets", "--no-server-check", "--sign-key", str(keys.private_key)],
        capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    champion = s3_text(moto_s3, "exports/LATEST").strip()
    assert s3_text(moto_s3, f"datasets/{champion}/dataset.json") is not None

    # the pods log events to S3: known users on items they have not seen, and a user nobody knew
    train = pd.read_parquet(data / "train.parquet")
    items = np.sort(pd.read_parquet(data / "items.parquet").item_id.to_numpy())
    now = int(time.time()) - 60
    log = InteractionLog(CONFIG["INTERACTION_LOG"])
    n_events = 0
    for j, user in enumerate([*train.user_id.unique()[:5].tolist(), NEW_USER]):
        fresh = np.setdiff1d(items, train.loc[train.user_id == user, "item_id"].to_numpy())[:3]
        n_events += log.append(EventBatch(int(user), fresh.astype(np.int64), np.full(len(fresh), now - j, np.int64),
                                          np.ones(len(fresh), np.float32))).n_new

    work = tmp_path / "night1"
    for volume, key in (("signing-key", keys.private_key), ("bundle-public-key", keys.public_key)):
        (work / volume).mkdir(parents=True)
        shutil.copy(key, work / volume / key.name)  # what the kubelet mounts from the Secret / ConfigMap
    containers = cronjob_containers()
    assert [c["name"] for c in containers] == ["export-pull", "retrain", "release"]
    for container in containers:
        done = run_container(container, work)
        assert done.returncode == 0, f"{container['name']}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"

    new_id = json.loads((work / "work" / "new" / "manifest.json").read_text())["bundle_id"]
    report = json.loads((work / "work" / "release.json").read_text())
    assert new_id != champion and report["bundle_id"] == new_id
    assert report["gate"]["passed"] and report["gate"]["champion"] == champion
    assert report["validated"]["contract_requests"] > 0  # a real tritonserver answered the new export
    assert report["validated"]["signed"]  # signed with the Secret's key, checked with the cluster's public key
    pulled_new = tmp_path / "published"
    subprocess.run([str(BIN / "aws"), "s3", "sync", "--only-show-errors", f"s3://models/exports/{new_id}/", str(pulled_new)],
                   check=True, timeout=300)
    verify_export(pulled_new, keys.public_key)  # what the pods' model-sync sidecar checks before loading it
    assert s3_text(moto_s3, "exports/LATEST").strip() == new_id
    assert json.loads(s3_text(moto_s3, f"exports/{new_id}/evaluation.json"))["bundle_id"] == new_id
    grown = json.loads(s3_text(moto_s3, f"datasets/{new_id}/dataset.json"))
    base = json.loads((data / "dataset.json").read_text())
    assert grown["n_train"] == base["n_train"] + n_events and grown["n_test"] == base["n_test"]
    assert grown["n_users"] == base["n_users"] + 1  # NEW_USER

    # the next night's pull finds the new bundle and the dataset it was grown from
    night2 = tmp_path / "night2"
    pulled = run_container(containers[0], night2)
    assert pulled.returncode == 0, pulled.stderr
    assert json.loads((night2 / "work" / "export" / "manifest.json").read_text())["bundle_id"] == new_id
    assert json.loads((night2 / "work" / "data" / "dataset.json").read_text())["n_train"] == grown["n_train"]
