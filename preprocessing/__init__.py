"""Feature workflows: ops, fit, transform, artifact save/load (NVTabular vocabulary on pandas/numpy).

```python
from cascade.preprocessing import FittedWorkflow, default_workflow
workflow = default_workflow(DatasetInfo.load(data_dir))
workflow.output_schema()                       # names/kinds/dtypes/list lengths before fitting
fitted = workflow.fit(data_dir)                # train split, one streaming pass
fitted.save(out_dir); fitted = FittedWorkflow.load(out_dir)
fitted.transform_batch({"item_id": ids, ...}, entity="item")   # serving
fitted.transform_dataset(data_dir, entity="item")              # training, same code path
```
"""

from __future__ import annotations

import importlib
from typing import Any

# Lazy exports: `cascade --help` imports this package (for the CLI) without paying for pandas.
_EXPORTS = {
    "default_workflow": "defaults",
    "FittedWorkflow": "fitted", "TransformedTable": "fitted",
    "ColumnGroup": "graph", "ColumnSelector": "graph",
    "Age": "ops", "Bucketize": "ops", "Categorify": "ops", "Clip": "ops", "FillMissing": "ops",
    "HashBucket": "ops", "ListSlice": "ops", "LogOp": "ops", "Normalize": "ops", "Op": "ops",
    "ColumnSpec": "schema", "Entity": "schema", "InputColumn": "schema",
    "Workflow": "workflow",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"cascade.preprocessing.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'cascade.preprocessing' has no attribute {name!r}")


__all__ = [
    "Age", "Bucketize", "Categorify", "Clip", "ColumnGroup", "ColumnSelector", "ColumnSpec", "Entity",
    "FillMissing", "FittedWorkflow", "HashBucket", "InputColumn", "ListSlice", "LogOp", "Normalize", "Op",
    "TransformedTable", "Workflow", "default_workflow",
]
