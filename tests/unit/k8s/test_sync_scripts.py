"""The S3 sync scripts of k8s/ (model-sync.sh in the Triton pod, feast-sync.sh in the Feast
CronJob).

model-sync.sh runs from the serving image: it downloads with the real `cascade objects cat|sync`
and checks with the real `cascade verify`. The publish location is a `file://` folder for the
control-flow tests (the same Store code as S3 minus boto3) and moto's S3 EMULATOR (a local server
process; S3 cannot be reached here) for the S3 path, behind a small HTTP proxy that drops the
connection of object downloads to emulate a network failure half way. `cascade rollout`/`bundles`
are a stand-in that keeps the "server" state in a JSON file (what `cascade rollout` does to a real
tritonserver is covered by tests/integration/test_bundles.py; here the script's control flow is
under test). feast-sync.sh (still the aws CLI, in the CronJob) runs against a fake `aws`: a local
folder stands for S3.

The three failure modes of issue 12 are reproduced: a failed rollout must not be recorded (it is
retried with backoff, a bounded number of times), a sidecar killed mid-rollout must roll out
again when it restarts, and a failed download must never activate a partial bundle."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
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
    fail = os.environ.get("FAKE_AWS_SYNC_FAIL")
    if fail and fail in paths[0]:  # a network error half way: some files copied, exit 1
        for rel, f in sorted(wanted.items())[: len(wanted) // 2]:
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dst / rel)
        sys.exit("download failed: Connection reset by peer")
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

FAKE_CASCADE = r"""#!PYTHON
# Stand-in for the cascade CLI: `verify` and `objects` are the real commands; the server is a JSON file.
import json, os, sys, time
from pathlib import Path

args = sys.argv[1:]
if args[0] == "objects":
    from cascade.cli import app
    app(args)
server = Path(os.environ["FAKE_TRITON"])
state = json.loads(server.read_text()) if server.is_file() else {"live": "", "held": []}
with open(os.environ["CASCADE_LOG"], "a") as log:
    log.write(" ".join(args[:2]) + "\n")

def verify(path):
    from cascade.bundles.manifest import verify_bundle
    from cascade.errors import CascadeError
    try:
        return verify_bundle(Path(path))
    except CascadeError as error:
        sys.exit("error: " + error.message)

if args[0] == "verify":
    verify(args[1])
elif args[0] == "bundles":
    if os.environ.get("FAKE_TRITON_DOWN"):
        sys.exit("error: tritonserver at 127.0.0.1:8001 does not answer gRPC")
    print(state["live"] if "--live" in args else " ".join(state["held"]))
elif args[0] == "rollout":
    bundle = verify(args[1]).bundle_id
    time.sleep(float(os.environ.get("FAKE_ROLLOUT_SECONDS", "0")))
    if bundle == os.environ.get("FAKE_ROLLOUT_FAIL"):
        sys.exit(f"error: rollout of bundle {bundle} failed at load: boom; live traffic stays on bundle {state['live']}")
    state = {"live": bundle, "held": [b for b in (state["live"], bundle) if b]}
    tmp = server.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(server)
else:
    sys.exit("unsupported: " + " ".join(args))
"""


@pytest.fixture()
def env(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "aws").write_text(FAKE_AWS.replace("PYTHON", sys.executable, 1))
    (bin_dir / "cascade").write_text(FAKE_CASCADE.replace("PYTHON", sys.executable, 1))
    for tool in ("aws", "cascade"):
        (bin_dir / tool).chmod(0o755)
    (tmp_path / "s3" / "bucket").mkdir(parents=True)
    (tmp_path / "export").mkdir()
    return {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_S3": str(tmp_path / "s3"),
        "FAKE_TRITON": str(tmp_path / "triton.json"),
        "CASCADE_LOG": str(tmp_path / "cascade.log"),
        "EXPORT_BUCKET": "bucket",
        "EXPORT_PREFIX": "exports",
        # model-sync.sh reads the publish location through `cascade objects` (file:// here, s3:// below)
        "EXPORT_URL": f"file://{tmp_path / 's3' / 'bucket' / 'exports'}",
        "EXPORT_VERSION": "latest",
        "EXPORT_ROOT": str(tmp_path / "export"),
        "FEAST_CONFIG": str(FEAST_CONFIG),
        "HEARTBEAT": str(tmp_path / "heartbeat"),
        "REPO": str(tmp_path / "feature_repo"),
        "VERSION_FILE": str(tmp_path / "export-version"),
        "SYNC_INTERVAL_SECONDS": "0.2",
        "SYNC_BACKOFF_SECONDS": "0.1",
        "SYNC_BACKOFF_MAX_SECONDS": "0.4",
        "SYNC_MAX_ATTEMPTS": "3",
    }


def s3(env: dict[str, str], key: str) -> Path:
    return Path(env["FAKE_S3"]) / "bucket" / key


def publish(env: dict[str, str], version: str, snapshot: str = "s1", latest: bool = True) -> None:
    """What `cascade release --publish s3://bucket/exports` leaves in S3 for one bundle."""
    from cascade import __version__
    from cascade.bundles.manifest import write_manifest

    base = s3(env, f"exports/{version}")
    files = {
        "export.json": f'{{"version": "{version}"}}',
        "model_repository/recommend/config.pbtxt": "platform: ensemble",
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
    write_manifest(base, version, __version__)
    (base / "evaluation.json").write_text('{"metrics": {"ndcg@10": 0.1}}')  # release writes it after the manifest
    if latest:
        s3(env, "exports/LATEST").write_text(version + "\n")


def run(env: dict[str, str], script: str, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["sh", str(SCRIPTS / script), *args], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def watch(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(["sh", str(SCRIPTS / "model-sync.sh"), "watch"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[str, str]:
    try:
        os.killpg(proc.pid, sig)  # the script and its children (its own session)
    except ProcessLookupError:
        pass
    return proc.communicate(timeout=30)


def wait_for(condition, what: str, proc: subprocess.Popen[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    out, err = stop(proc, signal.SIGKILL)
    pytest.fail(f"timed out waiting for {what}\n{out}\n{err}")


def live(env: dict[str, str]) -> str:
    path = Path(env["FAKE_TRITON"])
    return json.loads(path.read_text())["live"] if path.is_file() else ""


def calls(env: dict[str, str], command: str) -> list[str]:
    path = Path(env["CASCADE_LOG"])
    return [line for line in path.read_text().splitlines() if line.startswith(command)] if path.is_file() else []


def recorded(env: dict[str, str]) -> str | None:
    path = Path(env["EXPORT_ROOT"]) / ".live"
    return path.read_text().strip() if path.is_file() else None


def test_init_downloads_and_verifies_the_bundle(env: dict[str, str]) -> None:
    publish(env, "v1")
    run(env, "model-sync.sh", "once")
    bundle = Path(env["EXPORT_ROOT"]) / "bundles" / "v1"
    assert (bundle / "artifacts" / "ranking" / "dlrm.onnx").read_text() == "v1"
    assert (bundle / "feature_repo" / "feature_store.yaml").read_text() == FEAST_CONFIG.read_text()
    assert not (bundle / "feature_repo" / "data" / "online.db").exists()
    assert (bundle / "feature_repo" / "item_snapshot" / "LATEST").read_text().strip() == "s1"
    assert not list((Path(env["EXPORT_ROOT"]) / "bundles").glob(".partial-*"))
    assert calls(env, "verify") == [f"verify {Path(env['EXPORT_ROOT']) / 'bundles' / '.partial-v1'}"]
    run({**env, "EXPORT_VERSION": "v1"}, "model-sync.sh", "once")  # a pinned version, already there


def test_init_refuses_a_bundle_that_fails_verification(env: dict[str, str]) -> None:
    publish(env, "v1")
    s3(env, "exports/v1/artifacts/ranking/dlrm.onnx").write_text("changed after release")
    proc = subprocess.run(["sh", str(SCRIPTS / "model-sync.sh"), "once"], env=env, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "artifacts/ranking/dlrm.onnx: sha256 differs" in proc.stderr and "not activated" in proc.stderr
    assert not (Path(env["EXPORT_ROOT"]) / "bundles" / "v1").exists()


def test_init_enforces_the_release_signature(env: dict[str, str], tmp_path: Path) -> None:
    """With CASCADE_BUNDLE_PUBLIC_KEY (the pod mounts it), an unsigned bundle is refused in the
    cluster; the same bundle signed with the release key is fetched."""
    from cascade.bundles.signing import generate_keys, sign_manifest

    keys = generate_keys(tmp_path / "keys")
    signed_env = {**env, "CASCADE_BUNDLE_PUBLIC_KEY": str(keys.public_key)}
    publish(env, "v1")
    proc = subprocess.run(["sh", str(SCRIPTS / "model-sync.sh"), "once"], env=signed_env, capture_output=True, text=True)
    assert proc.returncode != 0 and "manifest.sig" in proc.stderr and "not activated" in proc.stderr, proc.stderr
    assert not (Path(env["EXPORT_ROOT"]) / "bundles" / "v1").exists()
    sign_manifest(s3(env, "exports/v1"), keys.private_key)
    run(signed_env, "model-sync.sh", "once")
    assert (Path(env["EXPORT_ROOT"]) / "bundles" / "v1" / "manifest.sig").is_file()
    assert (Path(env["EXPORT_ROOT"]) / ".initial").read_text().strip() == "v1"


class DroppingProxy:
    """An HTTP proxy in front of the S3 emulator that, while ``drop`` names a key prefix, lets the
    first ``keep`` object downloads under it through and then closes the connection of every other
    one without an answer (a network failure half way through a bundle)."""

    def __init__(self, upstream: str) -> None:
        import http.client
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import urlparse

        self.drop: str | None = None
        self.keep = 2
        self.passed = 0
        target = urlparse(upstream)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                if self.command == "GET" and proxy.drop and self.path.split("?")[0].startswith(proxy.drop):
                    proxy.passed += 1
                    if proxy.passed > proxy.keep:
                        self.close_connection = True
                        self.connection.close()
                        return
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                conn.request(self.command, self.path, body=body, headers=dict(self.headers))
                answer = conn.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def upload(env: dict[str, str], endpoint: str) -> None:
    """Copy the published folder (the file:// location) into the emulator's bucket `models`."""
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint)
    root = Path(env["FAKE_S3"]) / "bucket"
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        client.upload_file(str(path), "models", path.relative_to(root).as_posix())


def test_failure_mode_a_failed_download_is_never_activated(env: dict[str, str], moto_s3: str) -> None:
    """Issue 12: a failed download in watch mode activated a partial bundle. Here over S3 (boto3
    against the emulator, through the dropping proxy)."""
    proxy = DroppingProxy(moto_s3)
    env = {**env, **{k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")},
           "AWS_ENDPOINT_URL": proxy.url, "AWS_MAX_ATTEMPTS": "1", "EXPORT_URL": "s3://models/exports"}
    publish(env, "v1")
    upload(env, moto_s3)
    proc = watch(env)
    try:
        wait_for(lambda: recorded(env) == "v1", "v1 live", proc, timeout=60)
        assert (Path(env["EXPORT_ROOT"]) / "bundles" / "v1" / "artifacts" / "ranking" / "dlrm.onnx").read_text() == "v1"
        publish(env, "v2")
        proxy.drop = "/models/exports/v2/"
        upload(env, moto_s3)
        wait_for(lambda: proxy.passed > proxy.keep + 1, "failed downloads of v2", proc, timeout=60)
        assert (Path(env["EXPORT_ROOT"]) / "bundles" / ".partial-v2").is_dir()
        assert live(env) == "v1" and recorded(env) == "v1"
        # a failing download is retried, but never counted toward giving up on the bundle: the
        # network failed, not the bundle
        assert not (Path(env["EXPORT_ROOT"]) / "bundles" / ".failed-v2").exists()
        assert not any("v2" in c for c in calls(env, "rollout")), "a partial download was rolled out"
        assert not (Path(env["EXPORT_ROOT"]) / "bundles" / "v2").exists()
        proxy.drop = None  # the network is back: the download resumes and v2 goes live
        wait_for(lambda: live(env) == "v2" and recorded(env) == "v2", "v2 live", proc, timeout=60)
    finally:
        out, err = stop(proc)
        proxy.close()
    assert "download of v2 failed; not activated" in err, err


def test_failure_mode_a_failed_rollout_is_not_recorded_and_retries_are_bounded(env: dict[str, str]) -> None:
    """Issue 12: the sidecar recorded the new version before the load succeeded."""
    publish(env, "v1")
    proc = watch({**env, "FAKE_ROLLOUT_FAIL": "v2"})
    try:
        wait_for(lambda: recorded(env) == "v1", "v1 live", proc)
        publish(env, "v2")
        wait_for(lambda: (Path(env["EXPORT_ROOT"]) / "bundles" / ".failed-v2").is_file(), "giving up on v2", proc)
        time.sleep(1.0)  # several more intervals: no further attempt
        assert live(env) == "v1" and recorded(env) == "v1"
        assert calls(env, "rollout").count(f"rollout {Path(env['EXPORT_ROOT']) / 'bundles' / 'v2'}") == 3
        publish(env, "v3")  # LATEST moves on: the next bundle is rolled out
        wait_for(lambda: recorded(env) == "v3", "v3 live", proc)
        folders = lambda: sorted(p.name for p in (Path(env["EXPORT_ROOT"]) / "bundles").iterdir()  # noqa: E731
                                 if p.is_dir() and not p.name.startswith("."))
        wait_for(lambda: folders() == ["v1", "v3"], "v2 pruned (Triton never held it)", proc)
    finally:
        out, err = stop(proc)
    assert "attempt 1/3 for v2 failed; still serving v1" in err and "retrying in 0.1 s" in out
    assert "retrying in 0.2 s" in out and "giving up on v2 after 3 attempts" in err


def test_failure_mode_killed_mid_rollout_rolls_out_again(env: dict[str, str]) -> None:
    """Issue 12: killed mid-load, the sidecar never reloaded."""
    publish(env, "v1")
    proc = watch(env)
    wait_for(lambda: recorded(env) == "v1", "v1 live", proc)
    stop(proc)
    publish(env, "v2")
    proc = watch({**env, "FAKE_ROLLOUT_SECONDS": "30"})
    wait_for(lambda: any("v2" in c for c in calls(env, "rollout")), "rollout of v2 started", proc)
    stop(proc, signal.SIGKILL)  # the pod's container is killed mid-rollout
    assert live(env) == "v1" and recorded(env) == "v1"
    proc = watch(env)
    try:
        wait_for(lambda: live(env) == "v2" and recorded(env) == "v2", "v2 live after the restart", proc)
    finally:
        stop(proc)


def test_triton_not_answering_backs_off_without_touching_state(env: dict[str, str]) -> None:
    publish(env, "v1")
    proc = watch({**env, "FAKE_TRITON_DOWN": "1"})
    try:
        wait_for(lambda: len(calls(env, "bundles")) >= 5, "five attempts", proc, timeout=60)
    finally:
        out, err = stop(proc)
    assert "does not answer" in err and "retrying in 0.4 s" in out  # capped backoff
    assert recorded(env) is None and calls(env, "rollout") == []


def test_materialization_publishes_a_snapshot_the_pod_picks_up(env: dict[str, str], tmp_path: Path) -> None:
    publish(env, "v1")
    proc = watch(env)
    try:
        wait_for(lambda: recorded(env) == "v1", "v1 live", proc)
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
        local = Path(env["EXPORT_ROOT"]) / "bundles" / "v1" / "feature_repo" / "item_snapshot"
        wait_for(lambda: (local / "LATEST").read_text().strip() == "s4", "snapshot s4 in the pod", proc)
        assert (local / "s4" / "items.parquet").read_text() == "s4"
        assert len(calls(env, "rollout")) == 1, "a new snapshot needs no rollout"
    finally:
        stop(proc)
