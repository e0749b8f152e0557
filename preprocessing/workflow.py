"""An unfitted :class:`Workflow`: input columns (each with its entity) and one pipeline per output.

Its output schema (names, kinds, dtypes, list lengths) is known before fitting; cardinalities of
fitted vocabularies are known after :meth:`Workflow.fit`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Literal

from cascade.errors import SchemaError
from cascade.preprocessing.graph import ColumnGroup, Pipeline
from cascade.preprocessing.ops import Categorify, op_from_config
from cascade.preprocessing.schema import ENTITIES, ColumnSpec, Entity, InputColumn

if TYPE_CHECKING:
    from cascade.preprocessing.fitted import FittedWorkflow

Engine = Literal["cpu", "cudf"]


class Workflow:
    """``Workflow(outputs=[["a"] >> Categorify(), ...], inputs=[InputColumn(...), ...])``."""

    def __init__(self, outputs: Iterable[ColumnGroup | Any], inputs: Iterable[InputColumn]) -> None:
        self.inputs: dict[str, InputColumn] = {}
        for column in inputs:
            if column.name in self.inputs:
                raise SchemaError(
                    f"input column {column.name!r} is declared twice (user and item columns must have distinct names)"
                )
            self.inputs[column.name] = column
        self.pipelines: list[Pipeline] = []
        for group in outputs:
            group = ColumnGroup.of(group)
            for name in group.columns:
                if name not in self.inputs:
                    raise SchemaError(f"workflow selects column {name!r}, which is not an input; inputs: {sorted(self.inputs)}")
                ops = [op.model_copy(deep=True) for op in group.ops]
                self.pipelines.append(Pipeline(self.inputs[name], ops))
        names = [p.name for p in self.pipelines]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise SchemaError(f"workflow outputs {duplicates} more than once; each output name must be unique")
        self._link_shared_vocabularies()

    def _link_shared_vocabularies(self) -> None:
        owners = {p.input.name: p.categorify() for p in self.pipelines}
        for pipeline in self.pipelines:
            for op in pipeline.ops:
                if isinstance(op, Categorify) and op.vocab_from is not None:
                    source = owners.get(op.vocab_from)
                    if source is None or source.vocab_from is not None:
                        raise SchemaError(
                            f"column {pipeline.input.name!r}: vocab_from={op.vocab_from!r} needs a column "
                            "with its own Categorify in the same workflow"
                        )
                    source_type = self.inputs[op.vocab_from].dtype
                    if source_type != pipeline.input.dtype:
                        raise SchemaError(
                            f"column {pipeline.input.name!r} ({pipeline.input.dtype}) cannot share the vocabulary of "
                            f"{op.vocab_from!r} ({source_type}): element dtypes differ"
                        )
                    op.link(source)

    # -- schema -----------------------------------------------------------------------------
    def input_columns(self, entity: Entity | None = None) -> list[InputColumn]:
        """The raw columns ``transform_batch`` needs for ``entity`` (all entities when None)."""
        _check_entity(entity)
        used = {p.input.name for p in self.pipelines}
        return [c for c in self.inputs.values() if c.name in used and entity in (None, c.entity)]

    def output_schema(self, entity: Entity | None = None) -> list[ColumnSpec]:
        """Output columns in order (cardinality is None for vocabularies not fitted yet)."""
        _check_entity(entity)
        return [p.spec() for p in self.pipelines if entity in (None, p.entity)]

    # -- configuration --------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """JSON-serialisable description of the graph (no fitted state)."""
        return {
            "inputs": [c.model_dump() for c in self.inputs.values()],
            "pipelines": [
                {"input": p.input.name, "ops": [op.model_dump(mode="json") for op in p.ops]} for p in self.pipelines
            ],
        }

    def config_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.config(), sort_keys=True).encode()).hexdigest()

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Workflow":
        inputs = [InputColumn.model_validate(c) for c in config["inputs"]]
        groups = [
            ColumnGroup((p["input"],), tuple(op_from_config(o) for o in p["ops"])) for p in config["pipelines"]
        ]
        return cls(groups, inputs)

    # -- fitting ----------------------------------------------------------------------------
    def fit(
        self,
        data_dir: Path,
        *,
        engine: Engine = "cpu",
        batch_rows: int = 1 << 20,
        progress: bool = True,
    ) -> "FittedWorkflow":
        """Fit on the TRAIN split of the dataset at ``data_dir`` (see :mod:`cascade.preprocessing.fit`)."""
        from cascade.preprocessing.fit import fit_workflow

        return fit_workflow(self, Path(data_dir), engine=engine, batch_rows=batch_rows, progress=progress)

    def copy(self) -> "Workflow":
        return Workflow.from_config(self.config())


def _check_entity(entity: str | None) -> None:
    if entity is not None and entity not in ENTITIES:
        raise SchemaError(f"entity must be 'user' or 'item', got {entity!r}")
