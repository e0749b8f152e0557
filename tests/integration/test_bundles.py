"""Bundles in one real tritonserver (explicit model control, Triton's repository API over gRPC):
the short version of benchmarks/swap.py. Under 4 closed-loop gRPC clients: serve bundle A,
roll out B, roll out A again (still loaded), roll back, and try two broken bundles (a corrupted
ONNX file; a model.py that raises at load) and a bundle whose file changed after export. Zero
failed requests, every answer from A or B, traffic never on a broken bundle. A forced mixed
ensemble (A's stages with B's query tower) is refused by the stage, not answered.

The two bundles share trained artifacts (`cascade export --artifacts`) and differ in their
candidate count, so they have different bundle ids and configs."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.swap import ClosedLoop, broken_bundles
from cascade.bundles.manifest import load_manifest
from cascade.errors import BundleVerificationError, RolloutError
from cascade.serving.server import TritonServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bundles(bundle_export: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from cascade.workflows.export import export_repository

    data, export_a = bundle_export
    root = tmp_path_factory.mktemp("bundles")
    export_b = export_repository(data, root / "b", artifacts_dir=export_a / "artifacts", n_candidates=120).root
    export_c = export_repository(data, root / "c", artifacts_dir=export_a / "artifacts", n_candidates=100).root
    return {"A": export_a, "B": export_b, "C": export_c, **broken_bundles(export_b, root)}


@pytest.fixture(scope="module")
def bundle_server(bundles: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    from cascade.bundles.serve import running_bundle_server

    with running_bundle_server(tmp_path_factory.mktemp("bundle-server"), bundles["A"]) as server:
        yield server


def _ids(bundles: dict[str, Path]) -> dict[str, str]:
    return {name: load_manifest(path).bundle_id for name, path in bundles.items()}


def test_rollouts_rollback_and_broken_bundles_under_load(bundle_server: TritonServer, bundles: dict[str, Path]) -> None:
    from cascade.bundles.rollout import rollback, rollout
    from cascade.bundles.state import connect, read_state

    url, ids, lock_dir = bundle_server.grpc_url, _ids(bundles), bundle_server.log_file.parent
    client = connect(url)
    assert read_state(client).live == ids["A"]
    with ClosedLoop(url) as load:
        time.sleep(1.0)
        result = rollout(bundles["B"], url, grace_s=0.0, lock_dir=lock_dir)
        assert (result.bundle_id, result.previous, result.reused) == (ids["B"], ids["A"], False)
        time.sleep(0.5)
        again = rollout(bundles["A"], url, grace_s=0.0, lock_dir=lock_dir)  # A is still loaded: no load
        assert again.reused and again.previous == ids["B"]
        back = rollback(url, lock_dir=lock_dir)
        assert (back.bundle_id, back.previous) == (ids["B"], ids["A"])
        for broken, step in (("broken_onnx", "load"), ("broken_py", "load")):
            with pytest.raises(RolloutError, match=rf"(?s)failed at {step}: .*live traffic stays on bundle {ids['B']}"):
                rollout(bundles[broken], url, grace_s=0.0, lock_dir=lock_dir)
            assert read_state(client).live == ids["B"]
        with pytest.raises(BundleVerificationError, match=r"artifacts/index/item_ids.npy: sha256 differs"):
            rollout(bundles["tampered"], url, grace_s=0.0, lock_dir=lock_dir)
        time.sleep(0.5)
    assert load.failures == []
    assert len(load.versions) > 20
    assert set(load.versions) <= {ids["A"], ids["B"]}
    assert {ids["A"], ids["B"]} <= set(load.versions)  # both bundles answered during the run
    state = read_state(client)
    assert (state.live, state.previous) == (ids["B"], ids["A"])
    assert set(state.bundles) == {ids["A"], ids["B"]}  # broken bundles were unloaded again
    repository = state.repository
    assert repository is not None and not any("broken" in p.name for p in repository.iterdir())
    assert not any("mixed bundles refused" in f for f in load.failures)
    # `interactions` (outside the ensemble) follows the live bundle under its own name
    from cascade.bundles.state import admin_headers

    assert client.is_model_ready("interactions", headers=admin_headers())
    params = client.get_model_config("interactions", headers=admin_headers(), as_json=True)["config"]["parameters"]
    assert (params["bundle_id"]["string_value"], params["export_root"]["string_value"]) == (
        ids["B"], str(bundles["B"].resolve()))
    # ... and logs events to the server's one log, not into a bundle (A's, then B's, model said so)
    log = bundle_server.log_file.parent / "interaction_log"
    assert bundle_server.log_file.read_text(errors="replace").count(f"interactions: log {log}, ") >= 2
    assert not any((bundles[name] / "interaction_log").exists() for name in ("A", "B"))


def test_a_mixed_ensemble_is_refused_by_the_stage(bundle_server: TritonServer, bundles: dict[str, Path]) -> None:
    """Force a mismatch: an ensemble chaining A's entry stage into B's second stage."""
    from google.protobuf import json_format

    from cascade.bundles.models import config_json
    from cascade.bundles.state import connect, read_state
    from cascade.client import RecommendClient
    from cascade.errors import CascadeError

    ids = _ids(bundles)
    client = connect(bundle_server.grpc_url)
    state = read_state(client)
    assert {ids["A"], ids["B"]} <= set(state.bundles)
    pinned = client.get_model_config(f"recommend__{ids['A']}", as_json=True)["config"]
    from tritonclient.grpc import model_config_pb2 as pb

    mixed = json_format.ParseDict(pinned, pb.ModelConfig(), ignore_unknown_fields=True)
    mixed.name = "mixed"
    first, second = mixed.ensemble_scheduling.step[0], mixed.ensemble_scheduling.step[1]
    second.model_name = second.model_name.replace(ids["A"], ids["B"])  # A's entry stage feeds B's next stage
    folder = state.repository / "mixed"
    (folder / "1").mkdir(parents=True)
    (folder / "config.pbtxt").write_text("")  # the load below overrides it
    try:
        client.load_model("mixed", config=config_json(mixed))
        with RecommendClient(bundle_server.grpc_url, model="mixed") as mixed_client:
            with pytest.raises(CascadeError, match=rf"mixed bundles refused: tensors from {first.model_name.split('__')[0]}"):
                mixed_client.recommend(1, k=5)
    finally:
        client.unload_model("mixed")
        shutil.rmtree(folder, ignore_errors=True)


def test_cli_bundles_and_rollback(bundle_server: TritonServer, bundles: dict[str, Path]) -> None:
    from typer.testing import CliRunner

    from cascade.cli import app

    ids = _ids(bundles)
    runner = CliRunner()
    listed = runner.invoke(app, ["bundles", "--url", bundle_server.grpc_url, "--json"])
    assert listed.exit_code == 0, listed.output
    state = json.loads(listed.stdout)
    live = state["live"]
    assert live in (ids["A"], ids["B"]) and state["bundles"][live]["ready"] and state["live_since"]
    rolled = runner.invoke(app, ["rollback", "--url", bundle_server.grpc_url, "--json"])
    assert rolled.exit_code == 0, rolled.output
    assert json.loads(rolled.stdout)["bundle_id"] == state["previous"]
    bad = runner.invoke(app, ["rollout", str(bundles["tampered"]), "--url", bundle_server.grpc_url])
    assert bad.exit_code != 0 and "sha256 differs" in bad.stderr
    metrics = __import__("urllib.request").request.urlopen(bundle_server.metrics_url, timeout=5).read().decode()
    assert f'cascade_bundle_info{{bundle="{state["previous"]}"}} 1' in metrics


def test_a_superseded_bundle_is_unloaded_once_drained(bundle_server: TritonServer, bundles: dict[str, Path]) -> None:
    """A third bundle: the one that is now neither live nor previous is unloaded by the rollout,
    within the grace (it stopped being live moments ago: its pinned ensemble is checked quiet
    first, `wait_drained`), and traffic goes to the new one."""
    from cascade.bundles.rollout import rollout
    from cascade.bundles.state import connect, read_state
    from cascade.client import RecommendClient

    ids, url = _ids(bundles), bundle_server.grpc_url
    before = read_state(connect(url))
    assert before.previous is not None and {before.live, before.previous} <= {ids["A"], ids["B"]}
    # grace 120 s: a blind sleep to the grace would take ~100 s here; the drain check takes ~1 s
    result = rollout(bundles["C"], url, grace_s=120.0, lock_dir=bundle_server.log_file.parent)
    assert (result.bundle_id, result.previous, result.unloaded) == (ids["C"], before.live, [before.previous])
    after = read_state(connect(url))
    assert (after.live, after.previous, set(after.bundles)) == (ids["C"], before.live, {ids["C"], before.live})
    with RecommendClient(url) as client:
        assert ids["C"] in client.recommend(1, k=5).model_version
