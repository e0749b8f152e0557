"""`cascade release` end to end on the tiny export: configs parse as Triton's ModelConfig, a real
tritonserver on the export alone answers the contract suite, the bundle is evaluated offline, the
gate compares with the champion's recorded evaluation, and `file://` publishing writes LATEST
last. (The `s3://` path: tests/unit/bundles/test_publish.py, against moto's S3 emulator.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cascade.bundles.manifest import load_manifest
from cascade.bundles.publish import open_store
from cascade.cli import app

pytestmark = pytest.mark.integration


def test_release_validates_gates_and_publishes(bundle_export: tuple[Path, Path], tmp_path: Path) -> None:
    data, export = bundle_export
    models = f"file://{tmp_path / 'models'}"
    runner = CliRunner()
    first = runner.invoke(app, ["release", "--data", str(data), "--export", str(export), "--champion", models,
                                "--publish", models, "--max-users", "60", "--report", str(tmp_path / "r1.json")])
    assert first.exit_code == 0, first.output
    report = json.loads((tmp_path / "r1.json").read_text())
    bundle = load_manifest(export).bundle_id
    assert report["bundle_id"] == bundle and report["published"] == models
    assert report["validated"]["configs"] == len(list((export / "model_repository").glob("*/config.pbtxt")))
    assert report["validated"]["contract_requests"] >= 2
    assert set(report["evaluation"]["metrics"]) == {"ndcg@10", "recall@100"}
    store = open_store(models)
    assert store.latest() == bundle and store.evaluation(bundle)["metrics"] == report["evaluation"]["metrics"]
    assert (tmp_path / "models" / bundle / "manifest.json").is_file()

    # A champion that was much better: the same bundle now fails the gate and nothing is published.
    champion = tmp_path / "champion"
    (champion / "best").mkdir(parents=True)
    better = {m: v * 2 + 0.01 for m, v in report["evaluation"]["metrics"].items()}
    (champion / "best" / "evaluation.json").write_text(json.dumps({"metrics": better}))
    (champion / "LATEST").write_text("best\n")
    second = runner.invoke(app, ["release", "--data", str(data), "--export", str(export), "--no-server-check",
                                 "--champion", f"file://{champion}", "--publish", f"file://{champion}",
                                 "--max-users", "60"])
    assert second.exit_code == 1, second.output
    said = " ".join(second.output.split())  # rich wraps at the terminal width
    assert "quality gate failed: ndcg@10" in said and "nothing published" in said
    assert open_store(f"file://{champion}").latest() == "best"


def test_release_signs_and_refuses_a_key_the_cluster_does_not_trust(bundle_export: tuple[Path, Path], tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """--sign-key signs before verification, so with the cluster's CASCADE_BUNDLE_PUBLIC_KEY set a
    bundle signed by any other key fails before the server check, the gate and publishing."""
    import shutil

    from cascade.bundles.signing import generate_keys, verify_signature

    data, shared = bundle_export
    export = tmp_path / "export"
    shutil.copytree(shared, export)  # signing writes manifest.sig: never into the session's export
    cluster, other = generate_keys(tmp_path / "cluster"), generate_keys(tmp_path / "other")
    monkeypatch.setenv("CASCADE_BUNDLE_PUBLIC_KEY", str(cluster.public_key))
    models = tmp_path / "models"
    refused = CliRunner().invoke(app, ["release", "--data", str(data), "--export", str(export), "--no-server-check",
                                       "--publish", f"file://{models}", "--sign-key", str(other.private_key)])
    assert refused.exit_code != 0
    assert "does not match" in " ".join(refused.output.split()) and not models.exists()

    signed = CliRunner().invoke(app, ["release", "--data", str(data), "--export", str(export), "--no-server-check",
                                      "--publish", f"file://{models}", "--max-users", "30"],
                                env={"CASCADE_BUNDLE_SIGNING_KEY": str(cluster.private_key)})
    assert signed.exit_code == 0, signed.output
    bundle = load_manifest(export).bundle_id
    verify_signature(models / bundle, cluster.public_key)  # the published copy carries the signature
