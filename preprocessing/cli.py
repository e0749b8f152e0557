"""``cascade preprocess fit|transform|schema``: fit the default workflow on a dataset (cached by
input hash), transform a dataset's entity tables, print a fitted workflow's output schema."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from cascade.console import fail

app = typer.Typer(no_args_is_help=True)




@app.command("fit")
def fit(
    data: Path = typer.Option(..., "--data", help="canonical dataset folder (fits on train.parquet only)"),
    out: Path = typer.Option(..., "--out", help="output folder for the fitted workflow artifact"),
    engine: str = typer.Option("cpu", "--engine", help="cpu (default) or cudf (GPU machines)"),
    force: bool = typer.Option(False, "--force", help="refit even when the cached artifact is up to date"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bars"),
) -> None:
    """Fit the default workflow; skipped when dataset hash + workflow config + code version match."""
    from cascade.cache import inputs_hash, is_fresh, mark_done
    from cascade.errors import CascadeError, SchemaError

    try:
        from cascade.preprocessing.artifact import code_version
        from cascade.preprocessing.defaults import default_workflow
        from cascade.workflows.dataset import DatasetInfo

        if engine not in ("cpu", "cudf"):
            raise SchemaError(f"--engine must be 'cpu' or 'cudf', got {engine!r}")
        info = DatasetInfo.load(data)
        workflow = default_workflow(info)
        key = inputs_hash(dataset=info.content_hash, config=workflow.config_hash(), code=code_version())
        if not force and is_fresh(out, key):
            typer.echo(f"{out}: fitted workflow is up to date (dataset {info.content_hash[:12]}), skipped")
            return
        fitted = workflow.fit(data, engine=engine, progress=not quiet)  # type: ignore[arg-type]
        fitted.save(out)
        mark_done(out, key, dataset=str(Path(data).resolve()))
    except CascadeError as error:
        fail(error)
    typer.echo(f"fitted workflow -> {out} ({fitted.meta.fit_seconds:.1f} s, {fitted.meta.train_rows:,} train rows)")
    for spec in fitted.output_schema():
        typer.echo(
            f"  {spec.entity:4s} {spec.name:24s} {spec.kind:11s} {spec.dtype:7s}"
            f" card={spec.cardinality if spec.cardinality is not None else '-'}"
            f" len={spec.list_length if spec.list_length is not None else '-'}"
        )


@app.command("transform")
def transform(
    workflow: Path = typer.Option(..., "--workflow", help="fitted workflow folder"),
    data: Path = typer.Option(..., "--data", help="canonical dataset folder"),
    out: Path = typer.Option(..., "--out", help="folder for users.parquet / items.parquet of model inputs"),
    entity: Optional[str] = typer.Option(None, "--entity", help="user or item (default: both)"),
) -> None:
    """Transform the users / items tables of a dataset (lists become fixed-size list columns)."""
    from cascade.errors import CascadeError, SchemaError

    try:
        import numpy as np
        import pyarrow as pa
        import pyarrow.parquet as pq

        from cascade.preprocessing.fitted import FittedWorkflow

        if entity not in (None, "user", "item"):
            raise SchemaError(f"--entity must be 'user' or 'item', got {entity!r}")
        fitted = FittedWorkflow.load(workflow)
        out.mkdir(parents=True, exist_ok=True)
        for name in [entity] if entity else ["user", "item"]:
            table = fitted.transform_dataset(data, name)  # type: ignore[arg-type]
            arrays = {f"{name}_id_raw": pa.array(table.ids)}
            for column, values in table.columns.items():
                if values.ndim == 2:
                    flat = pa.array(np.ascontiguousarray(values).reshape(-1))
                    arrays[column] = pa.FixedSizeListArray.from_arrays(flat, values.shape[1])
                else:
                    arrays[column] = pa.array(values)
            path = out / f"{name}s.parquet"
            pq.write_table(pa.table(arrays), path)
            typer.echo(f"{name}: {len(table.ids):,} rows -> {path}")
    except CascadeError as error:
        fail(error)


@app.command("schema")
def schema(workflow: Path = typer.Option(..., "--workflow", help="fitted workflow folder")) -> None:
    """Print the output schema and provenance of a fitted workflow as JSON."""
    import json

    from cascade.errors import CascadeError

    try:
        from cascade.preprocessing.fitted import FittedWorkflow

        fitted = FittedWorkflow.load(workflow)
    except CascadeError as error:
        fail(error)
    json.dump(
        {"meta": fitted.meta.model_dump(mode="json"), "output_schema": [s.model_dump() for s in fitted.output_schema()]},
        sys.stdout,
        indent=2,
    )
    sys.stdout.write("\n")
