""":class:`FittedWorkflow`: transform (serving batches and whole datasets through ONE code path),
output schema with cardinalities, save/load."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cascade.errors import SchemaError
from cascade.preprocessing.artifact import ArtifactMeta, read_artifact, write_artifact
from cascade.preprocessing.graph import Pipeline
from cascade.preprocessing.ops import Categorify
from cascade.preprocessing.schema import ENTITIES, ColumnSpec, Entity, InputColumn
from cascade.preprocessing.values import Values, canonicalize
from cascade.preprocessing.workflow import Workflow, _check_entity

DEFAULT_BATCH_ROWS = 65536


@dataclass
class TransformedTable:
    """One entity table transformed: raw ids in table order (catalog order for items) + outputs."""

    entity: Entity
    ids: np.ndarray
    columns: dict[str, np.ndarray]


class FittedWorkflow:
    """A workflow whose ops hold fitted statistics."""

    def __init__(self, workflow: Workflow, meta: ArtifactMeta) -> None:
        unfitted = [p.name for p in workflow.pipelines if not p.fitted]
        if unfitted:
            raise SchemaError(f"workflow columns {unfitted} are not fitted")
        self.workflow = workflow
        self.meta = meta
        self._pipelines: dict[str, list[Pipeline]] = {
            e: [p for p in workflow.pipelines if p.entity == e] for e in ENTITIES
        }
        self._inputs: dict[str, list[InputColumn]] = {e: workflow.input_columns(e) for e in ENTITIES}

    # -- schema ---------------------------------------------------------------------------
    def output_schema(self, entity: Entity | None = None) -> list[ColumnSpec]:
        return self.workflow.output_schema(entity)

    def input_columns(self, entity: Entity | None = None) -> list[InputColumn]:
        return self.workflow.input_columns(entity)

    def vocabulary(self, output: str) -> np.ndarray:
        """Raw values of a Categorify output in index order (index = 1 + num_oov_buckets + position)."""
        for pipeline in self.workflow.pipelines:
            if pipeline.name == output and (op := pipeline.categorify()) is not None:
                return op.vocabulary()
        raise SchemaError(f"workflow has no categorified output {output!r}")

    def categorify(self, output: str) -> Categorify:
        for pipeline in self.workflow.pipelines:
            if pipeline.name == output and (op := pipeline.categorify()) is not None:
                return op.owner
        raise SchemaError(f"workflow has no categorified output {output!r}")

    # -- transform ------------------------------------------------------------------------
    def transform_batch(self, columns: Mapping[str, Any], entity: Entity) -> dict[str, np.ndarray]:
        """Serving path: raw numpy columns of ``entity`` -> workflow outputs (vectorised numpy).

        Scalar inputs are 1-D arrays of length B; list inputs a 1-D object array of sequences or a
        2-D array. Columns that are not inputs of ``entity`` are ignored.
        """
        _check_entity(entity)
        if entity is None:
            raise SchemaError("entity must be 'user' or 'item', got None")
        if not isinstance(columns, Mapping):
            raise SchemaError(f"transform_batch expects a dict of column name -> numpy array, got {type(columns).__name__}")
        canonical: dict[str, Values] = {}
        n_rows: int | None = None
        first = ""
        for spec in self._inputs[entity]:
            if spec.name not in columns:
                raise SchemaError(
                    f"{entity} input column {spec.name!r} is missing; expected {spec.describe()} "
                    f"(got columns {sorted(columns)})"
                )
            values = canonicalize(columns[spec.name], spec)
            if n_rows is None:
                n_rows, first = values.n_rows, spec.name
            elif values.n_rows != n_rows:
                raise SchemaError(
                    f"{entity} column {spec.name!r} has {values.n_rows} rows but {first!r} has {n_rows}; "
                    "all columns of a batch must have the same length"
                )
            canonical[spec.name] = values
        return {p.name: p.transform(canonical[p.input.name]) for p in self._pipelines[entity]}

    def transform_frame(
        self, frame: pd.DataFrame, entity: Entity, *, batch_rows: int = DEFAULT_BATCH_ROWS, progress: bool = False
    ) -> dict[str, np.ndarray]:
        """Offline path: ``frame`` in chunks of ``batch_rows`` through :meth:`transform_batch`."""
        from cascade.progress import progress_bar

        _check_entity(entity)
        names = [c.name for c in self._inputs[entity] if c.name in frame.columns]  # absent: named by transform_batch
        arrays = {name: frame[name].to_numpy() for name in names}
        parts: list[dict[str, np.ndarray]] = []
        n = len(frame)
        bar = progress_bar(total=n, unit="row", desc=f"transform {entity}", enabled=progress)
        for start in range(0, max(n, 1), batch_rows):
            chunk = {name: array[start:start + batch_rows] for name, array in arrays.items()}
            parts.append(self.transform_batch(chunk, entity))
            bar.update(min(batch_rows, n - start))
        bar.close()
        if len(parts) == 1:
            return parts[0]
        return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}

    def transform_dataset(
        self, data_dir: Path, entity: Entity, *, batch_rows: int = DEFAULT_BATCH_ROWS, progress: bool = True
    ) -> TransformedTable:
        """Training path: the entity table of a dataset (users.parquet + train-derived history, or
        items.parquet), transformed chunk by chunk exactly like :meth:`transform_batch`."""
        from cascade.preprocessing.tables import id_column, read_entity_frame
        from cascade.workflows.dataset import load_dataset

        _check_entity(entity)
        paths, _ = load_dataset(Path(data_dir))
        frame = read_entity_frame(paths, entity, self._inputs[entity])
        columns = self.transform_frame(frame, entity, batch_rows=batch_rows, progress=progress)
        return TransformedTable(entity, frame[id_column(entity)].to_numpy(np.int64), columns)

    # -- artifact -------------------------------------------------------------------------
    def save(self, directory: Path) -> Path:
        """Write the artifact folder (see :mod:`cascade.preprocessing.artifact`)."""
        states: list[list[dict[str, Any]]] = []
        arrays: dict[str, np.ndarray] = {}
        for p_index, pipeline in enumerate(self.workflow.pipelines):
            op_states = []
            for o_index, op in enumerate(pipeline.ops):
                scalars, op_arrays = op.get_state()
                op_states.append(scalars)
                for key, array in op_arrays.items():
                    arrays[f"{p_index}.{o_index}.{key}"] = array
            states.append(op_states)
        schema = [s.model_dump() for s in self.output_schema()]
        return write_artifact(Path(directory), self.meta, self.workflow.config(), schema, states, arrays)

    @classmethod
    def load(cls, directory: Path) -> "FittedWorkflow":
        payload, arrays = read_artifact(Path(directory))
        workflow = Workflow.from_config(payload["config"])
        for p_index, (pipeline, op_states) in enumerate(zip(workflow.pipelines, payload["state"])):
            for o_index, (op, scalars) in enumerate(zip(pipeline.ops, op_states)):
                prefix = f"{p_index}.{o_index}."
                op_arrays = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
                op.set_state(scalars, op_arrays)
        return cls(workflow, ArtifactMeta.model_validate(payload["meta"]))
