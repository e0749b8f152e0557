"""The S3 sync scripts of k8s/ (model-sync.sh in the Triton pod, feast-sync.sh in the Feast
CronJob) against a fake `aws` (a local folder stands for S3) and a fake `curl` (logs the model
control calls): the export layout under /export, the Redis feature_store.yaml, item snapshot
publication and pick-up, hot reload into a fresh folder, switch-back on a failed load."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPTS = ROOT / "k8s" / "base" / "scripts"
FEAST_CONFIG = ROOT / "k8s" / "base" / "feast" / "feature_store.yaml"

pytestmark = pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")

FAKE_AWS = r'''#!PYTHON
"""Just enough of `aws s3 cp|sync|ls|rm` for the scripts; s3://B/K is $FAKE_S3/B/K."""
import fnmatch, os, shutil, sys
from pathlib import Path

S3 = Path(os.environ["FAKE_S3"])
args = [a for a in sys.argv[1:] if a not in ("--only-show-errors", "--no-progress", "--delete", "--recursive")]
delete, recursive = "--delete" in sys.argv, "--recursive" in sys.argv
excludes = []
while "--exclude" in args:
    i = args.index("--exclude")
    excludes.append(args[i + 1])
    del args[i:i + 2]
assert args[0] == "s3", args
op, paths = args[1], args[2:]

def local(p):
    return S3 / p[len("s3://"):] if p.startswith("s3://") else Path(p)

def files(root):
    return {str(f.relative_to(root)): f for f in root.rglob("*") if f.is_file()} if root.is_dir() else {}

if op == "cp":
    src, dst = paths
    if src == "-":
        data = sys.stdin.buffer.read()
    else:
        if not local(src).is_file():
            sys.exit("fatal error: not found: " + src)
        data = local(src).read_bytes()
    if dst == "-":
        sys.stdout.buffer.write(data)
    else:
        local(dst).parent.mkdir(parents=True, exist_ok=True)
        local(dst).write_bytes(data)
elif op == "sync":
    src, dst = local(paths[0]), local(paths[1])
    keep = lambda rel: not any(fnmatch.fnmatch(rel, pat) for pat in excludes)
    wanted = {rel: f for rel, f in files(src).items() if keep(rel)}
    for rel, f in wanted.items():
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, dst / rel)
    if delete:
        for rel, f in files(dst).items():
            if rel not in wanted and keep(rel):
                f.unlink()
    dst.mkdir(parents=True, exist_ok=True)
elif op == "ls":
    target = local(paths[0])
    if paths[0].endswith("/"):
        if not target.is_dir():
            sys.exit(1)
        for child in sorted(target.iterdir()):
            print(f"                           PRE {child.name}/" if child.is_dir() else f"2024-01-01 00:00:00 1 {child.name}")
    elif not target.exists():
        sys.exit(1)
elif op == "rm":
    shutil.rmtree(local(paths[0])) if recursive else local(paths[0]).unlink()
else:
    sys.exit("unsupported: " + op)
'''

FAKE_CURL = """#!/bin/sh
# fake curl: log the URL (last argument); loading `ranking` fails while the links point at
# version $FAKE_CURL_FAIL_VERSION
for last; do :; done
echo "$last" >> "$CURL_LOG"
case "$last" in *"/ranking/"*)
  [ "$(readlink "$EXPORT_ROOT/model_repository")" = "versions/${FAKE_CURL_FAIL_VERSION:-none}/model_repository" ] && exit 22 ;;
esac
exit 0
"""


@pytest.fixture()
def env(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "aws").write_text(FAKE_AWS.replace("PYTHON", sys.executable, 1))
    (bin_dir / "curl").write_text(FAKE_CURL)
    for tool in ("aws", "curl"):
        (bin_dir / tool).chmod(0o755)
    (tmp_path / "s3" / "bucket").mkdir(parents=True)
    (tmp_path / "export").mkdir()
    return {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_S3": str(tmp_path / "s3"),
        "CURL_LOG": str(tmp_path / "curl.log"),
        "EXPORT_BUCKET": "bucket",
        "EXPORT_PREFIX": "exports",
        "EXPORT_VERSION": "latest",
        "EXPORT_ROOT": str(tmp_path / "export"),
        "FEAST_CONFIG": str(FEAST_CONFIG),
        "HEARTBEAT": str(tmp_path / "heartbeat"),
        "ADMIN_KEY": "k",
        "REPO": str(tmp_path / "feature_repo"),
        "VERSION_FILE": str(tmp_path / "export-version"),
        "SYNC_INTERVAL_SECONDS": "0.2",
    }


def s3(env: dict[str, str], key: str) -> Path:
    return Path(env["FAKE_S3"]) / "bucket" / key


def publish(env: dict[str, str], version: str, snapshot: str = "s1", latest: bool = True) -> None:
    """What k8s/scripts/publish-export.sh leaves in S3 for one export."""
    base = s3(env, f"exports/{version}")
    files = {
        "export.json": f'{{"version": "{version}"}}',
        "model_repository/recommend/config.pbtxt": "platform: ensemble",
        "model_repository/item_features/config.pbtxt": "backend: python",
        "model_repository/ranking/config.pbtxt": "backend: python",
        "artifacts/ranking/dlrm.onnx": version,
        "feature_repo/cascade_repo.json": "{}",
        "feature_repo/feature_store.yaml": "online_store: {type: sqlite, path: data/online.db}",
        "feature_repo/data/registry.db": version,
        "feature_repo/data/online.db": "sqlite",
        f"feature_repo/item_snapshot/{snapshot}/items.parquet": snapshot,
        "feature_repo/item_snapshot/LATEST": snapshot + "\n",
    }
    for rel, text in files.items():
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_text(text)
    if latest:
        s3(env, "exports/LATEST").write_text(version + "\n")


def run(env: dict[str, str], script: str, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["sh", str(SCRIPTS / script), *args], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def wait_for(condition, what: str, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    proc.kill()
    out, err = proc.communicate()
    pytest.fail(f"timed out waiting for {what}\n{out}\n{err}")


def test_init_sync_lays_out_the_export(env: dict[str, str]) -> None:
    publish(env, "v1")
    run(env, "model-sync.sh", "once")
    export = Path(env["EXPORT_ROOT"])
    for part in ("export.json", "model_repository", "artifacts", "feature_repo"):
        assert (export / part).is_symlink() and os.readlink(export / part) == f"versions/v1/{part}"
    assert (export / "model_repository" / "recommend" / "config.pbtxt").is_file()
    assert (export / "artifacts" / "ranking" / "dlrm.onnx").read_text() == "v1"
    assert (export / "feature_repo" / "feature_store.yaml").read_text() == FEAST_CONFIG.read_text()
    assert (export / "feature_repo" / "data" / "registry.db").is_file()
    assert not (export / "feature_repo" / "data" / "online.db").exists()
    assert (export / "feature_repo" / "item_snapshot" / "LATEST").read_text().strip() == "s1"
    assert (export / "feature_repo" / "item_snapshot" / "s1" / "items.parquet").is_file()
    assert (export / ".version").read_text().strip() == "v1"


def test_init_sync_honours_a_pinned_version(env: dict[str, str]) -> None:
    publish(env, "v1")
    publish(env, "v2")
    run({**env, "EXPORT_VERSION": "v1"}, "model-sync.sh", "once")
    assert os.readlink(Path(env["EXPORT_ROOT"]) / "model_repository") == "versions/v1/model_repository"


def test_init_sync_rejects_an_incomplete_export(env: dict[str, str]) -> None:
    publish(env, "v1")
    s3(env, "exports/v1/model_repository/recommend/config.pbtxt").unlink()
    proc = subprocess.run(["sh", str(SCRIPTS / "model-sync.sh"), "once"], env=env, capture_output=True, text=True)
    assert proc.returncode != 0 and "recommend/config.pbtxt" in proc.stderr
    assert not (Path(env["EXPORT_ROOT"]) / "model_repository").exists()


def test_materialization_publishes_a_snapshot_the_pod_picks_up(env: dict[str, str], tmp_path: Path) -> None:
    publish(env, "v1")
    run(env, "model-sync.sh", "once")
    # CronJob: pull, materialize (simulated: a new snapshot + LATEST), push.
    run(env, "feast-sync.sh", "pull")
    repo = Path(env["REPO"])
    assert (repo / "cascade_repo.json").is_file() and (repo / "item_snapshot" / "LATEST").read_text().strip() == "s1"
    assert not (repo / "data" / "online.db").exists()
    for snap in ("s2", "s3", "s4"):
        (repo / "item_snapshot" / snap).mkdir()
        (repo / "item_snapshot" / snap / "items.parquet").write_text(snap)
        (repo / "item_snapshot" / "LATEST").write_text(snap + "\n")
        run(env, "feast-sync.sh", "push")
    remote = s3(env, "exports/v1/feature_repo/item_snapshot")
    assert (remote / "LATEST").read_text().strip() == "s4"
    assert sorted(p.name for p in remote.iterdir() if p.is_dir()) == ["s2", "s3", "s4"]  # newest 3 kept

    watch = subprocess.Popen(["sh", str(SCRIPTS / "model-sync.sh"), "watch"], env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        local = Path(env["EXPORT_ROOT"]) / "feature_repo" / "item_snapshot"
        wait_for(lambda: (local / "LATEST").read_text().strip() == "s4", "snapshot s4 in the pod", watch)
        assert (local / "s4" / "items.parquet").read_text() == "s4"
        assert not Path(env["CURL_LOG"]).exists(), "a new snapshot needs no model reload"
    finally:
        watch.kill()
        watch.communicate()


def test_hot_reload_into_a_fresh_folder(env: dict[str, str]) -> None:
    publish(env, "v1")
    run(env, "model-sync.sh", "once")
    export = Path(env["EXPORT_ROOT"])
    log = Path(env["CURL_LOG"])
    watch = subprocess.Popen(["sh", str(SCRIPTS / "model-sync.sh"), "watch"], env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        publish(env, "v2", snapshot="t1")
        wait_for(lambda: (export / ".version").read_text().strip() == "v2" and log.exists()
                 and log.read_text().rstrip().endswith("/recommend/load"), "reload of v2", watch)
        loads = log.read_text().split()
        assert loads[-1] == "http://127.0.0.1:8000/v2/repository/models/recommend/load"
        assert {u.split("/")[-2] for u in loads} == {"item_features", "ranking", "recommend"}
        assert (export / "artifacts" / "ranking" / "dlrm.onnx").read_text() == "v2"
        assert (export / "feature_repo" / "feature_store.yaml").read_text() == FEAST_CONFIG.read_text()
        assert (export / "feature_repo" / "item_snapshot" / "LATEST").read_text().strip() == "t1"
        assert (export / "versions" / "v1").is_dir(), "the previous version stays"

        log.unlink()
        publish(env, "v3")
        wait_for(lambda: (export / ".version").read_text().strip() == "v3" and log.exists()
                 and log.read_text().rstrip().endswith("/recommend/load"), "reload of v3", watch)
        time.sleep(0.3)
        assert sorted(p.name for p in (export / "versions").iterdir()) == ["v2", "v3"]

        # A stage that fails to load: back to v3 (links and models), retried next interval.
        watch.kill()
        watch.communicate()
        log.unlink()
        publish(env, "v4")
        watch = subprocess.Popen(["sh", str(SCRIPTS / "model-sync.sh"), "watch"], text=True,
                                 env={**env, "FAKE_CURL_FAIL_VERSION": "v4", "SYNC_INTERVAL_SECONDS": "2"},
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_for(lambda: log.exists() and log.read_text().rstrip().endswith("/recommend/load"), "switch back", watch)
        watch.kill()
        assert log.read_text().split()[-3:] == [
            f"http://127.0.0.1:8000/v2/repository/models/{m}/load" for m in ("item_features", "ranking", "recommend")]
        assert (export / ".version").read_text().strip() == "v3"
        assert os.readlink(export / "model_repository") == "versions/v3/model_repository"
    finally:
        watch.kill()
        out, err = watch.communicate()
    assert "loading v4 failed; switching back to v3" in err


def test_publish_script_output_is_what_the_pod_syncs(env: dict[str, str], tmp_path: Path) -> None:
    """k8s/scripts/publish-export.sh (aws CLI) -> s3://bucket/exports/<version>/ + LATEST -> pod."""
    export = tmp_path / "local-export"
    files = {
        "export.json": '{"version": "20250101T000000Z-abcdef12"}',
        "model_repository/recommend/config.pbtxt": "platform: ensemble",
        "artifacts/index/items.faiss": "x",
        "feature_repo/cascade_repo.json": "{}",
        "feature_repo/data/registry.db": "r",
        "feature_repo/data/online.db": "sqlite",
        "feature_repo/.cascade/materialize.json": "{}",
        "feature_repo/item_snapshot/s1/items.parquet": "s1",
        "feature_repo/item_snapshot/LATEST": "s1\n",
    }
    for rel, text in files.items():
        (export / rel).parent.mkdir(parents=True, exist_ok=True)
        (export / rel).write_text(text)
    publish_script = ROOT / "k8s" / "scripts" / "publish-export.sh"
    run_publish = lambda: subprocess.run(["sh", str(publish_script), str(export), "s3://bucket/exports"],  # noqa: E731
                                         env=env, capture_output=True, text=True, timeout=60)
    proc = run_publish()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    version = "20250101T000000Z-abcdef12"
    assert s3(env, "exports/LATEST").read_text() == version + "\n"
    assert s3(env, f"exports/{version}/artifacts/index/items.faiss").is_file()
    assert not s3(env, f"exports/{version}/feature_repo/data/online.db").exists()
    assert not s3(env, f"exports/{version}/feature_repo/.cascade").exists()
    again = run_publish()
    assert again.returncode != 0 and "exists already" in again.stderr, "versions are immutable"

    run(env, "model-sync.sh", "once")
    root = Path(env["EXPORT_ROOT"])
    assert (root / ".version").read_text().strip() == version
    assert (root / "feature_repo" / "item_snapshot" / "LATEST").read_text().strip() == "s1"


@pytest.mark.parametrize(("store", "refused"), [
    ("online_store: {type: redis, connection_string: 'cache:6379,ssl=true,password=s3cret'}", True),
    ("online_store:\n  type: redis\n  password: \"s3cret\"\n", True),
    ("online_store: {type: redis, connection_string: '${FEAST_REDIS_CONNECTION_STRING}'}", False),
    ("online_store: {type: redis, connection_string: 'cache:6379,password=${FEAST_REDIS_PASSWORD}'}", False),
])
def test_publish_refuses_a_literal_redis_password(env: dict[str, str], tmp_path: Path, store: str, refused: bool) -> None:
    """The Redis AUTH token comes from the cluster's Secret; it must never land in the bucket."""
    export = tmp_path / "local-export"
    files = {
        "export.json": '{"version": "v-auth"}',
        "model_repository/recommend/config.pbtxt": "platform: ensemble",
        "feature_repo/cascade_repo.json": "{}",
        "feature_repo/feature_store.yaml": store,
        "feature_repo/data/registry.db": "r",
        "feature_repo/item_snapshot/s1/items.parquet": "s1",
        "feature_repo/item_snapshot/LATEST": "s1\n",
    }
    for rel, text in files.items():
        (export / rel).parent.mkdir(parents=True, exist_ok=True)
        (export / rel).write_text(text)
    proc = subprocess.run(["sh", str(ROOT / "k8s" / "scripts" / "publish-export.sh"), str(export), "s3://bucket/exports"],
                          env=env, capture_output=True, text=True, timeout=60)
    if refused:
        assert proc.returncode != 0 and "literal Redis password" in proc.stderr, proc.stderr
        assert not s3(env, "exports/v-auth").exists(), "nothing uploaded"
    else:
        assert proc.returncode == 0, proc.stderr
        assert s3(env, "exports/v-auth/feature_repo/feature_store.yaml").read_text() == store
