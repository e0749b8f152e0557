"""Export the towers and the ranker to ONNX: inputs named after workflow output columns, dynamic
batch axis, every declared input present in the graph (unused ones kept as inputs so a caller
can always feed the full set of workflow outputs)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from cascade.errors import SchemaError
from cascade.models.features import FeatureSpec

OPSET = 17


def example_inputs(specs: list[FeatureSpec], batch: int, seed: int = 0) -> dict[str, "object"]:
    """Random valid inputs (numpy) for ``specs``: ids in [0, cardinality), 0-padded lists."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for spec in specs:
        if spec.is_categorical:
            shape = (batch, int(spec.list_length)) if spec.is_list else (batch,)
            values = rng.integers(0, int(spec.cardinality or 1), size=shape, dtype=np.int64)
            if spec.is_list:  # trailing padding, as the workflow writes it
                lengths = rng.integers(0, int(spec.list_length) + 1, size=batch)
                values[np.arange(int(spec.list_length))[None, :] >= lengths[:, None]] = 0
            out[spec.name] = values
        else:
            out[spec.name] = rng.normal(size=(batch,)).astype(np.float32)
    return out


def _numpy_dtype(spec: FeatureSpec) -> str:
    return "int64" if spec.is_categorical else "float32"


USER_ROW = "user_row"  # dlrm.onnx: INT64 [N], the user row (batch U) of each candidate row (batch N)


def export_module(
    fn: Callable[..., "object"],
    module: "object",
    specs: list[FeatureSpec],
    output_name: str,
    path: Path,
    axes: dict[str, str] | None = None,
    user_row: bool = False,
) -> Path:
    """Export ``fn(features_dict)`` (a method of ``module``) with inputs ``specs`` to ``path``.

    ``axes`` names the dynamic batch axis per input (default "batch" for all; the output takes
    "batch" too). ``user_row``: add an INT64 input ``user_row`` [batch] (after the specs) passed
    as ``fn(features, user_row=...)``; inputs on a "users" axis then get sample batch 2, others 5."""
    import onnx
    import torch
    from onnx import TensorProto, helper

    names = [s.name for s in specs]
    if len(set(names)) != len(names) or (user_row and USER_ROW in names):
        raise SchemaError(f"duplicate input names for ONNX export: {names}")
    axes = {n: (axes or {}).get(n, "batch") for n in names}

    class _Positional(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = module

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            features = dict(zip(names, tensors))
            if user_row:
                return fn(features, user_row=tensors[len(names)])
            return fn(features)

    wrapper = _Positional().eval()
    sizes = {"batch": 5 if user_row else 3, "users": 2}
    sample: dict[str, object] = {}
    for axis in sorted(set(axes.values())):
        group = [s for s in specs if axes[s.name] == axis]
        sample.update(example_inputs(group, batch=sizes.get(axis, 3), seed=len(sample)))
    args = [torch.from_numpy(sample[n]) for n in names]
    input_names = list(names)
    dynamic = {n: {0: axes[n]} for n in names}
    if user_row:
        args.append(torch.tensor([0, 1, 1, 0, 1], dtype=torch.int64))
        input_names.append(USER_ROW)
        dynamic[USER_ROW] = {0: "batch"}
    dynamic[output_name] = {0: "batch"}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    import warnings

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper, tuple(args), str(path), input_names=input_names, output_names=[output_name],
            dynamic_axes=dynamic, opset_version=OPSET, dynamo=False, do_constant_folding=True,
        )
    model = onnx.load(str(path))
    present = {i.name for i in model.graph.input}
    for spec in specs:  # the TorchScript exporter drops inputs the graph never reads: put them back
        if spec.name in present:
            continue
        shape = [axes[spec.name], int(spec.list_length)] if spec.is_list else [axes[spec.name]]
        elem = TensorProto.INT64 if spec.is_categorical else TensorProto.FLOAT
        model.graph.input.append(helper.make_tensor_value_info(spec.name, elem, shape))
    order = {n: i for i, n in enumerate(input_names)}
    inputs = sorted(model.graph.input, key=lambda v: order.get(v.name, len(order)))
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def onnx_session(path: Path, threads: int = 1) -> "object":
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(session: "object", inputs: dict) -> "object":
    """Run a session with exactly its declared inputs taken from ``inputs`` (numpy arrays)."""
    import numpy as np

    feed = {}
    for arg in session.get_inputs():
        if arg.name not in inputs:
            raise SchemaError(f"ONNX model input {arg.name!r} is missing from the features given")
        dtype = np.int64 if "int64" in arg.type else np.float32
        feed[arg.name] = np.ascontiguousarray(inputs[arg.name], dtype=dtype)
    return session.run(None, feed)[0]


def export_two_tower(model: "object", out_dir: Path) -> tuple[Path, Path]:
    """Write ``user_tower.onnx`` (output "query") and ``item_tower.onnx`` (output "item_embedding")."""
    model.eval()
    user = export_module(model.query, model, model.user_inputs, "query", Path(out_dir) / "user_tower.onnx")
    item = export_module(model.item, model, model.item_inputs, "item_embedding", Path(out_dir) / "item_tower.onnx")
    return user, item


def export_dlrm(model: "object", out_dir: Path) -> Path:
    """Write ``dlrm.onnx``: inputs all workflow outputs by name, user-entity ones with batch axis
    "users" (U; serving: 1), item-entity ones with batch axis "batch" (N candidates), plus
    ``user_row`` INT64 [N] (the user row of each candidate, gathered inside the graph, so the user
    side runs once per user); output "score" float32 [N] (logit)."""
    model.eval()
    axes = {s.name: ("users" if s.entity == "user" else "batch") for s in model.specs}
    return export_module(model.forward, model, model.specs, "score", Path(out_dir) / "dlrm.onnx",
                         axes=axes, user_row=True)
