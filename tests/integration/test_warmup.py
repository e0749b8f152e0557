"""`cascade export` gives every stage a Triton ``model_warmup`` sample (cascade/online/warmup.py) so
the first real request after a start does not pay the Python backend's first-execute cost; the
samples must be valid requests of the stage, or the model would fail to load."""

from __future__ import annotations

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from cascade.online.export_layout import ExportLayout
from cascade.online.warmup import WARMUP_DIR, stage_warmups

pytestmark = pytest.mark.integration

STAGES = ("candidates", "ranking")


def _config(path) -> model_config_pb2.ModelConfig:
    config = model_config_pb2.ModelConfig()
    text_format.Parse(path.read_text(), config)
    return config


def test_every_stage_config_carries_a_warmup_matching_its_inputs(tiny_export) -> None:
    _, export_root = tiny_export
    layout = ExportLayout(export_root)
    expected = stage_warmups(layout)
    assert set(expected) == set(STAGES)
    for stage in STAGES:
        config = _config(layout.model_repository / stage / "config.pbtxt")
        assert len(config.model_warmup) == 1, stage
        sample = config.model_warmup[0]
        declared = {i.name: i for i in config.input}
        required = {name for name, i in declared.items() if not i.optional}
        assert required <= set(sample.inputs), (stage, required - set(sample.inputs))
        for name, value in sample.inputs.items():
            assert value.data_type == declared[name].data_type, (stage, name)
            assert len(value.dims) == len(declared[name].dims), (stage, name)  # same rank as the config
        for want in expected[stage]:
            assert tuple(sample.inputs[want.name].dims) == want.dims, (stage, want.name)
            if want.data is not None:
                raw = np.fromfile(layout.model_repository / stage / WARMUP_DIR / want.name, dtype=want.data.dtype)
                np.testing.assert_array_equal(raw, want.data.reshape(-1))


def test_query_and_ranking_widths_follow_the_dataset(tiny_export) -> None:
    from cascade.online.stages import encoded_layout, load_workflow

    _, export_root = tiny_export
    layout = ExportLayout(export_root)
    user = encoded_layout(load_workflow(layout.workflow), "user")
    sample = _config(layout.model_repository / "ranking" / "config.pbtxt").model_warmup[0]
    assert list(sample.inputs["user_cat"].dims) == [len(user.categorical)]
    assert list(sample.inputs["user_lists"].dims) == [user.list_width]
    assert list(sample.inputs["candidate_rows"].dims) == [min(layout.manifest().n_candidates, 250)]


def test_a_fresh_server_ran_exactly_one_warmup_per_stage_before_ready(tiny_export, tmp_path) -> None:
    """A warm-up that failed would have failed the load; a ready server with no request sent yet
    shows one (warm-up) execution per stage and none for the ensemble."""
    import tritonclient.grpc as grpcclient

    from cascade.serving.ports import free_ports
    from cascade.serving.server import TritonServer, TritonServerConfig

    _, export_root = tiny_export
    http, grpc, metrics = free_ports(3)
    server = TritonServer(TritonServerConfig(model_repository=export_root / "model_repository", http_port=http,
                                             grpc_port=grpc, metrics_port=metrics, log_file=tmp_path / "triton.log"))
    server.start()
    try:
        server.wait_until_ready(180)
        client = grpcclient.InferenceServerClient(server.grpc_url)
        try:
            counts = {m["name"]: int(m.get("execution_count", 0))
                      for m in client.get_inference_statistics(model_name="", as_json=True)["model_stats"]}
        finally:
            client.close()
    finally:
        server.stop()
    assert {stage: counts.get(stage) for stage in STAGES} == {stage: 1 for stage in STAGES}
    assert counts.get("recommend", 0) == 0
