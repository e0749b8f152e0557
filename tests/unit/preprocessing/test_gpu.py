"""engine="cudf": a clear error without cudf; on a GPU machine, the same statistics as the CPU engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cascade.errors import UnavailableError
from cascade.preprocessing import default_workflow
from cascade.preprocessing.gpu import cudf_available
from cascade.workflows.dataset import DatasetInfo


@pytest.mark.skipif(cudf_available(), reason="cudf is installed")
def test_cudf_engine_without_cudf_is_a_clear_error(tiny_dataset: Path):
    with pytest.raises(UnavailableError, match="engine='cudf' needs cudf"):
        default_workflow(DatasetInfo.load(tiny_dataset)).fit(tiny_dataset, engine="cudf", progress=False)


@pytest.mark.skipif(not cudf_available(), reason="needs cudf and a CUDA GPU")
def test_cudf_fit_equals_cpu_fit(tiny_dataset: Path):
    workflow = default_workflow(DatasetInfo.load(tiny_dataset))
    cpu = workflow.fit(tiny_dataset, engine="cpu", progress=False)
    gpu = workflow.fit(tiny_dataset, engine="cudf", progress=False)
    assert gpu.meta.engine == "cudf" and gpu.output_schema() == cpu.output_schema()
    for a, b in zip(cpu.workflow.pipelines, gpu.workflow.pipelines):
        for op_a, op_b in zip(a.ops, b.ops):
            scalars_a, arrays_a = op_a.get_state()
            scalars_b, arrays_b = op_b.get_state()
            assert scalars_a == pytest.approx(scalars_b)
            assert arrays_a.keys() == arrays_b.keys()
            assert all(np.array_equal(arrays_a[k], arrays_b[k]) for k in arrays_a)
    for entity in ("user", "item"):
        x = cpu.transform_dataset(tiny_dataset, entity, progress=False).columns
        y = gpu.transform_dataset(tiny_dataset, entity, progress=False).columns
        assert all(x[k].tobytes() == y[k].tobytes() for k in x)
