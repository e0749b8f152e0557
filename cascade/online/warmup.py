"""Load-time warm-up of the stage models (Triton ``model_warmup``), written by ``cascade export``.

The first request a Python-backend model executes costs 20-35 ms more than the next ones (the
stub's first ``execute``: measured on an identity model too, so it is not the stage code), which
made the first ``recommend`` after every start ~100 ms (benchmarks/NOTES.md). Triton runs a
model's ``model_warmup`` samples before it marks the model ready, so with them the first real
request is a normal one.

The samples are valid requests of each stage with the export's dataset-dependent widths (encoded
feature counts, embedding size, candidate count): zeros (= null / padding codes, catalog row 0,
an unknown user), ``top_k`` from a one-value file (ranking gathers from the snapshot it prepared at
load and applies the rules to the zero scores).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cascade.online.export_layout import ExportLayout
from cascade.online.request import MAX_TOP_K

WARMUP_DIR = "warmup"  # Triton reads input_data_file from <model>/warmup/
WARMUP_TOP_K = 10
WARMUP_MODELS = ("candidates", "ranking")  # the keys of stage_warmups()


@dataclass(frozen=True)
class WarmupInput:
    name: str
    data_type: str  # Triton TYPE_*
    dims: tuple[int, ...]  # without the batch dim (every stage batches; batch_size 1)
    data: np.ndarray | None = None  # None: zero_data (zeros, false, empty strings)


def stage_warmups(layout: ExportLayout) -> dict[str, list[WarmupInput]]:
    """One warm-up sample per stage model of the export at ``layout``."""
    from cascade.online.stages import encoded_layout, load_workflow

    workflow = load_workflow(layout.workflow)
    manifest = layout.manifest()
    user = encoded_layout(workflow, "user")
    n_items = int(np.load(layout.index / "item_ids.npy", mmap_mode="r").shape[0])
    n = max(1, min(manifest.n_candidates, n_items))
    top_k = np.array([min(WARMUP_TOP_K, MAX_TOP_K, n)], dtype=np.int32)
    return {
        "candidates": [WarmupInput("user_id", "TYPE_INT64", (1,)), WarmupInput("top_k", "TYPE_INT32", (1,), top_k),
                       WarmupInput("explore", "TYPE_FP32", (1,))],
        "ranking": [
            WarmupInput("user_cat", "TYPE_INT64", (len(user.categorical),)),
            WarmupInput("user_cont", "TYPE_FP32", (len(user.continuous),)),
            WarmupInput("user_lists", "TYPE_INT64", (user.list_width,)),
            WarmupInput("candidate_rows", "TYPE_INT64", (n,)),
            WarmupInput("candidate_source", "TYPE_INT64", (n,)),
            WarmupInput("candidate_score", "TYPE_FP32", (n,)),
            WarmupInput("seen_items", "TYPE_INT64", (1,)),
            WarmupInput("top_k", "TYPE_INT32", (1,), top_k),
            WarmupInput("explore", "TYPE_FP32", (1,)),
            WarmupInput("cold_start", "TYPE_BOOL", (1,)),
        ],
    }


def warmup_config(inputs: list[WarmupInput]) -> str:
    """The ``model_warmup`` block (protobuf text) for ``inputs``."""
    lines = ['model_warmup [ {', '  name: "cascade_warmup"', "  batch_size: 1"]
    for i in inputs:
        dims = ", ".join(str(d) for d in i.dims)
        source = f'input_data_file: "{i.name}"' if i.data is not None else "zero_data: true"
        lines.append(f'  inputs {{ key: "{i.name}" value: {{ data_type: {i.data_type} dims: [ {dims} ] {source} }} }}')
    lines.append("} ]")
    return "\n".join(lines) + "\n"


def write_warmups(layout: ExportLayout) -> dict[str, list[WarmupInput]]:
    """Append each stage's ``model_warmup`` to its config.pbtxt and write its data files."""
    from cascade.bundles.tagging import tag_inputs

    warmups = stage_warmups(layout)
    for model, inputs in warmups.items():
        model_dir = layout.model_repository / model
        config = model_dir / "config.pbtxt"
        # the bundle tags of the export (cascade/bundles/tagging.py): the stage checks them
        inputs = inputs + [WarmupInput(name, "TYPE_INT64", (1,), np.array([value], dtype=np.int64))
                           for name, value in tag_inputs(config)]
        warmups[model] = inputs
        for i in inputs:
            if i.data is not None:
                (model_dir / WARMUP_DIR).mkdir(exist_ok=True)
                np.ascontiguousarray(i.data).tofile(model_dir / WARMUP_DIR / i.name)
        text = config.read_text().rstrip("\n")
        config.write_text(text + "\n# Load-time warm-up written by `cascade export` (cascade/online/warmup.py)\n"
                          + warmup_config(inputs))
    return warmups
