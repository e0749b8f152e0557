"""Experiments between bundles in one real tritonserver (issue 16): the router as `recommend`
(Python BLS model) splitting users by the salted hash, the `variant` input/output, per-variant
metrics and the SRM check read from the server's Prometheus endpoint, and canaries that abort
with an automatic rollback on a treatment that errors on 20 % of requests and on one 3x slower,
with zero failed requests for control users (closed-loop clients on loopback), and one that is
promoted. Bundles: the tiny export (A, control), B (same artifacts, other candidate count), and
copies of B whose ranking model.py (business rules) fails every 5th request or sleeps. During the A/B
split the router's exposure log and events pushed through the real `interactions` model (its log set by
$CASCADE_INTERACTIONS_INTERACTION_LOG, as on Kubernetes) give `experiment report`'s exposure numbers,
checked against a count made from what the clients saw; the SRM check counts distinct users."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from benchmarks.canary_faults import FAULTY_CODE, patched_bundle
from benchmarks.swap import ClosedLoop
from cascade.bundles.manifest import load_manifest
from cascade.experiments.assign import assign
from cascade.serving.server import TritonServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bundles(bundle_export: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from cascade.workflows.export import export_repository

    data, export_a = bundle_export
    root = tmp_path_factory.mktemp("experiments")
    export_b = export_repository(data, root / "b", artifacts_dir=export_a / "artifacts", n_candidates=120).root
    faulty = patched_bundle(export_b, root / "faulty", "faulty-20pct", FAULTY_CODE)
    return {"A": export_a, "B": export_b, "faulty": faulty}


@pytest.fixture(scope="module")
def server(bundles: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    from cascade.bundles.serve import running_bundle_server

    workdir = tmp_path_factory.mktemp("experiment-server")
    with pytest.MonkeyPatch.context() as env:  # the stubs inherit the server's environment at its start
        env.setenv("CASCADE_ROUTER_INSTANCES", "2")  # the default 16 is for throughput; every share change reloads them
        with running_bundle_server(workdir, bundles["A"]) as server:  # events: workdir/interaction_log
            yield server


def _live(url: str) -> str | None:
    from cascade.bundles.state import connect, read_state

    return read_state(connect(url)).live


def test_variant_input_and_output_without_experiment(server: TritonServer) -> None:
    from cascade.client import RecommendClient
    from cascade.errors import InvalidInputError

    with RecommendClient(server.grpc_url) as client:
        assert client.recommend(1, k=5).variant == "control"
        with pytest.raises(InvalidInputError, match="variant"):  # forcing a variant needs a running experiment
            client.recommend(1, k=5, variant="treatment")


def test_split_status_share_and_promote(server: TritonServer, bundles: dict[str, Path]) -> None:
    from typer.testing import CliRunner

    from cascade.bundles.rollout import rollout
    from cascade.cli import app
    from cascade.client import RecommendClient
    from cascade.errors import InvalidInputError, RolloutError

    url, lock_dir = server.grpc_url, server.log_file.parent
    id_a, id_b = load_manifest(bundles["A"]).bundle_id, load_manifest(bundles["B"]).bundle_id
    runner = CliRunner()
    exposures = lock_dir / "exposures"
    started = runner.invoke(app, ["experiment", "start", "--url", url, "--treatment", str(bundles["B"]),
                                  "--share", "0.5", "--salt", "s1", "--name", "ab1", "--exposure-log", str(exposures),
                                  "--exposure-flush-seconds", "0.2", "--json"])
    assert started.exit_code == 0, started.output
    assert json.loads(started.stdout)["experiment"]["control"] == id_a
    users = list(range(60))
    with RecommendClient(url) as client:
        served = {u: client.recommend(u, k=5) for u in users}
        for user, answer in served.items():  # the server's variant is the assignment function's
            expected = assign(user, "s1", 0.5)
            assert answer.variant == expected, user
            assert answer.model_version.split("+", 1)[0] == (id_b if expected == "treatment" else id_a)
        repeats = [client.recommend(u, k=5) for u in users[:10]]
        assert all(r.variant == served[u].variant for u, r in zip(users, repeats))  # sticky
        forced = client.recommend(users[0], k=5, variant="treatment")
        assert forced.variant == "treatment" and forced.model_version.startswith(id_b)
        with pytest.raises(InvalidInputError, match=r"input 'variant' must be one BYTES value of \['control', 'treatment'\]"):
            client.recommend(1, k=5, variant="blue")
        with pytest.raises(InvalidInputError, match="top_k"):  # the variant's own validation passes through
            client.recommend(1, k=0)
    with pytest.raises(RolloutError, match="experiment ab1 is running"):
        rollout(bundles["B"], url, lock_dir=lock_dir)
    seen = [(u, served[u]) for u in users] + list(zip(users[:10], repeats))  # the hash-assigned exposures
    _check_exposure_report(url, lock_dir, seen)  # + the forced request for users[0], excluded
    status = runner.invoke(app, ["experiment", "status", "--url", url, "--metrics-url", server.metrics_url, "--json"])
    assert status.exit_code == 0, status.output
    report = json.loads(status.stdout)
    hashed = users + users[:10] + [1]  # the 60, the 10 repeats, the top_k=0 request (forced/bad-variant ones are not hashed)
    expected = {v: sum(assign(u, "s1", 0.5) == v for u in hashed) for v in ("control", "treatment")}
    variants = report["variants"]
    assert {v: variants[v]["assignments"] for v in expected} == expected
    assert variants["treatment"]["requests"] == expected["treatment"] + 1  # + the forced one
    assert variants[assign(1, "s1", 0.5)]["invalid"] == 1  # top_k=0: the client's error, not the variant's
    assert variants["control"]["errors"] == 0 and variants["treatment"]["errors"] == 0
    assert 0.0 <= report["srm"]["p_value"] <= 1.0 and report["srm"]["mismatch"] is False
    assert report["srm"]["unit"] == "users" and report["srm"]["n"] == len(users)  # distinct users, from the exposure log
    assert report["srm"]["observed_share"] == pytest.approx(sum(assign(u, "s1", 0.5) == "treatment" for u in users) / len(users))
    text = runner.invoke(app, ["experiment", "status", "--url", url, "--metrics-url", server.metrics_url])
    assert "SRM:" in text.stdout and "treatment" in text.stdout
    shared = runner.invoke(app, ["experiment", "share", "0.2", "--url", url])
    assert shared.exit_code == 0, shared.output
    with RecommendClient(url) as client:
        for user in users[:30]:
            assert client.recommend(user, k=5).variant == assign(user, "s1", 0.2)
    stopped = runner.invoke(app, ["experiment", "stop", "--url", url, "--promote", "--json"])
    assert stopped.exit_code == 0, stopped.output
    from cascade.bundles.state import connect, read_state

    state = read_state(connect(url))
    assert (state.live, state.previous) == (id_b, id_a)  # A stays loaded: `cascade rollback` works
    with RecommendClient(url) as client:
        answer = client.recommend(users[0], k=5)
        assert answer.variant == "control" and answer.model_version.startswith(id_b)


def _check_exposure_report(url: str, workdir: Path, seen: list) -> None:
    """Events for some served items (and for items not shown), then `experiment report` against a
    count made here from the answers the clients got."""
    from typer.testing import CliRunner

    from cascade.cli import app
    from cascade.events.client import EventsClient

    now = int(time.time())
    clicked: dict[int, set[int]] = {}
    with EventsClient(url) as events:
        for user, answer in seen[:60]:
            if user % 3 == 0:  # a click on the second item shown
                clicked.setdefault(user, set()).add(answer.item_ids[1])
            if user % 4 == 0:  # an item this user was never shown (another user's)
                other = next(i for _, a in seen for i in a.item_ids if i not in {j for u, b in seen if u == user for j in b.item_ids})
                clicked.setdefault(user, set()).add(other)
        for user, items in clicked.items():
            assert events.push(user, sorted(items), [now] * len(items)).accepted == len(items)
    time.sleep(0.6)  # the router writes exposures every 0.2 s, its counters every 0.2 s
    result = CliRunner().invoke(app, ["experiment", "report", "--log", str(workdir / "interaction_log"), "--url", url,
                                      "--window-hours", "1"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["method"] == "exposures" and report["forced_exposures_excluded"] == 1, report
    for variant in ("control", "treatment"):
        mine = [(u, a) for u, a in seen if a.variant == variant]
        users = {u for u, _ in mine}
        followed = [1 for u, a in mine if clicked.get(u, set()) & set(a.item_ids)]
        clicks = {(u, i) for u, a in mine for i in clicked.get(u, set()) if i in a.item_ids}
        got = report["variants"][variant]
        assert (got["exposed_users"], got["exposures"], got["exposures_followed"], got["clicks"]) == (
            len(users), len(mine), len(followed), len(clicks)), (variant, got)
        assert got["clicks_per_exposed_user"] == pytest.approx(len(clicks) / len(users))
    assert report["difference"]["follow_rate"] is not None


def test_canary_aborts_a_faulty_treatment_and_rolls_back(server: TritonServer, bundles: dict[str, Path]) -> None:
    from cascade.experiments.canary import run_canary
    from cascade.experiments.guards import GuardSpec

    from cascade.bundles.state import connect, read_state

    url, lock_dir = server.grpc_url, server.log_file.parent
    control = _live(url)  # B since the promotion above
    with ClosedLoop(url, clients=3) as load:
        report = run_canary(bundles["faulty"], url, steps=[0.25, 0.5, 1.0], step_seconds=3.0, salt="c1",
                            guard=GuardSpec.parse("error_rate<=0.01,p99_ratio<=3,min_requests=10"),
                            metrics_url=server.metrics_url, lock_dir=lock_dir,
                            report_path=lock_dir / "canary-faulty.json")
        time.sleep(0.5)
    assert report.outcome == "aborted", report.to_dict()
    assert "error_rate" in report.reason
    reached = report.steps[-1]["share"]
    assert reached < 1.0
    assert report.steps[-1]["treatment"]["errors"] > 0
    assert load.failures_of_control_users("c1", reached) == []
    assert any(r.error is not None for r in load.records)  # the treatment did fail some requests
    state = read_state(connect(url))
    assert state.live == control and "faulty-20pct" not in state.bundles  # rolled back, treatment unloaded
    assert json.loads((lock_dir / "canary-faulty.json").read_text())["outcome"] == "aborted"


def test_canary_aborts_a_slow_treatment(server: TritonServer, bundles: dict[str, Path], tmp_path: Path) -> None:
    from cascade.experiments.canary import run_canary
    from cascade.experiments.guards import GuardSpec

    url, lock_dir = server.grpc_url, server.log_file.parent
    control = _live(url)
    with ClosedLoop(url, clients=3) as load:
        time.sleep(2.0)
    median = float(np.median([r.latency_ms for r in load.records])) / 1e3
    slow = patched_bundle(bundles["B"], tmp_path / "slow", "slow-3x", f"        __import__('time').sleep({2 * median:.4f})\n")
    with ClosedLoop(url, clients=3) as load:
        report = run_canary(slow, url, steps=[0.5, 1.0], step_seconds=3.0, salt="c2",
                            guard=GuardSpec.parse("error_rate<=0.01,p50_ratio<=1.8,min_requests=10"),
                            metrics_url=server.metrics_url, lock_dir=lock_dir)
    assert report.outcome == "aborted", report.to_dict()
    assert "p50_ratio" in report.reason
    assert load.failures == []
    assert _live(url) == control


def test_canary_cli_promotes_a_healthy_treatment(server: TritonServer, bundles: dict[str, Path], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cascade.cli import app

    url = server.grpc_url
    with ClosedLoop(url, clients=3) as load:
        result = CliRunner().invoke(app, [
            "rollout", str(bundles["A"]), "--url", url, "--canary", "50,100", "--step-seconds", "2",
            "--guard", "error_rate<=0.01,p99_ratio<=20,min_requests=5", "--metrics-url", server.metrics_url,
            "--report", str(tmp_path / "canary.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "canary.json").read_text())
    assert report["outcome"] == "promoted" and [s["share"] for s in report["steps"]] == [0.5, 1.0]
    assert _live(url) == load_manifest(bundles["A"]).bundle_id
    assert load.failures == []
