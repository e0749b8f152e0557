"""The export-time bundle-tag transform (cascade/bundles/tagging.py) on the shipped model sources
and on a reshaped two-step ensemble: every consumer gets one tag input per producing step, every
producer's tag is mapped, and the result still parses as Triton's ModelConfig."""

from __future__ import annotations

import shutil
from pathlib import Path

from cascade.bundles.tagging import (
    BUNDLE_INPUT_PREFIX, BUNDLE_OUTPUT, apply_bundle_tags, read_config, tag_inputs,
)
from cascade.paths import MODEL_REPOSITORY_SOURCES


def _inputs(config) -> set[str]:
    return {i.name for i in config.input}


def test_shipped_ensemble_wires_the_tag_from_every_producer(tmp_path: Path) -> None:
    repo = tmp_path / "model_repository"
    shutil.copytree(MODEL_REPOSITORY_SOURCES, repo)
    stages = apply_bundle_tags(repo, "b1")
    assert stages == ["candidates", "ranking"]
    ensemble = read_config(repo / "recommend" / "config.pbtxt")
    assert ensemble.parameters["bundle_id"].string_value == "b1"
    steps = {s.model_name: s for s in ensemble.ensemble_scheduling.step}
    assert {k for k in steps["ranking"].input_map if k.startswith(BUNDLE_INPUT_PREFIX)} == {
        BUNDLE_INPUT_PREFIX + "candidates"}
    assert steps["ranking"].input_map[BUNDLE_INPUT_PREFIX + "candidates"] == "cascade_bundle.candidates"
    assert BUNDLE_OUTPUT not in steps["ranking"].output_map  # nobody consumes it
    assert steps["candidates"].output_map[BUNDLE_OUTPUT] == "cascade_bundle.candidates"
    for stage in stages:
        config = read_config(repo / stage / "config.pbtxt")
        assert config.parameters["bundle_id"].string_value == "b1"
        assert BUNDLE_OUTPUT in {o.name for o in config.output}
        tags = {i for i in _inputs(config) if i.startswith(BUNDLE_INPUT_PREFIX)}
        assert tags == {k for k in steps[stage].input_map if k.startswith(BUNDLE_INPUT_PREFIX)}
    assert {name for name, _ in tag_inputs(repo / "ranking" / "config.pbtxt")} == {BUNDLE_INPUT_PREFIX + "candidates"}
    assert tag_inputs(repo / "candidates" / "config.pbtxt") == []  # the entry stage


def test_a_reshaped_ensemble_is_tagged_generically(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    for name, body in {
        "front": 'name: "front" backend: "python" input [ { name: "user_id" data_type: TYPE_INT64 dims: [ 1 ] } ] '
                 'output [ { name: "cand" data_type: TYPE_INT64 dims: [ -1 ] } ]',
        "back": 'name: "back" backend: "python" input [ { name: "cand" data_type: TYPE_INT64 dims: [ -1 ] } ] '
                'output [ { name: "item_ids" data_type: TYPE_INT64 dims: [ -1 ] } ]',
        "recommend": 'name: "recommend" platform: "ensemble" '
                     'input [ { name: "user_id" data_type: TYPE_INT64 dims: [ 1 ] } ] '
                     'output [ { name: "item_ids" data_type: TYPE_INT64 dims: [ -1 ] } ] '
                     'ensemble_scheduling { step [ '
                     '{ model_name: "front" model_version: -1 input_map { key: "user_id" value: "user_id" } output_map { key: "cand" value: "c" } }, '
                     '{ model_name: "back" model_version: -1 input_map { key: "cand" value: "c" } output_map { key: "item_ids" value: "item_ids" } } ] }',
    }.items():
        (repo / name).mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(body)
    assert apply_bundle_tags(repo, "b2") == ["front", "back"]
    assert _inputs(read_config(repo / "back" / "config.pbtxt")) == {"cand", BUNDLE_INPUT_PREFIX + "front"}
    assert _inputs(read_config(repo / "front" / "config.pbtxt")) == {"user_id"}


def test_models_outside_the_ensemble_follow_the_bundle_under_their_own_name(tmp_path: Path) -> None:
    """`interactions` (issue 15) is not a step of `recommend`: in bundle mode it keeps its name (clients
    call it by it; one instance), with the bundle's export_root and bundle_id (cascade/bundles/models.py)."""
    from cascade.bundles.models import BundleModels

    export = tmp_path / "export"
    shutil.copytree(MODEL_REPOSITORY_SOURCES, export / "model_repository")
    apply_bundle_tags(export / "model_repository", "b-1")
    models = BundleModels.from_export(export, "b-1")
    assert models.stage_names == ["candidates__b-1", "ranking__b-1"]
    assert [f.name for f in models.extras] == ["interactions"]
    config = models.extras[0].config
    assert config.name == "interactions" and config.instance_group[0].count == 1
    assert config.parameters["export_root"].string_value == str(export.resolve())
    assert config.parameters["bundle_id"].string_value == "b-1"
    assert "1/model.py" in models.extras[0].files
