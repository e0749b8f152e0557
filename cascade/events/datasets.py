"""Publish the dataset a bundle was trained on next to it, so the next ``cascade retrain`` (the
retrain CronJob pulls ``s3://BUCKET/datasets/<served bundle id>/``) can grow it:

```
<url>/<bundle_id>/users.parquet, items.parquet, train.parquet, test.parquet, ... then dataset.json
```
``dataset.json`` is written last: a folder without it is incomplete. ``cascade release
--dataset-url URL`` calls this after the quality gate passed and BEFORE the bundle's ``LATEST``
pointer moves, so a served bundle always has its dataset; a failed gate publishes neither.
Uses the bundle publisher's stores (:func:`cascade.bundles.publish.open_store`: ``file://`` or ``s3://``).
"""

from __future__ import annotations

import logging
from pathlib import Path

LOG = logging.getLogger(__name__)


def publish_dataset(data_dir: Path, url: str, bundle_id: str) -> str:
    """Upload the canonical dataset folder ``data_dir`` to ``<url>/<bundle_id>/``; returns that URL."""
    from cascade.bundles.publish import open_store
    from cascade.workflows.dataset import INFO_FILE, load_dataset

    data_dir = Path(data_dir)
    load_dataset(data_dir)  # NotFoundError naming the missing table of an incomplete folder
    store = open_store(url)
    files = sorted(p for p in data_dir.rglob("*") if p.is_file() and not p.name.startswith(".")
                   and p.name != INFO_FILE)
    for path in files:
        store.put_file(f"{bundle_id}/{path.relative_to(data_dir).as_posix()}", path)
    store.put_file(f"{bundle_id}/{INFO_FILE}", data_dir / INFO_FILE)  # last: the folder is complete
    target = f"{url.rstrip('/')}/{bundle_id}"
    LOG.info("published dataset %s to %s (%d files)", data_dir, target, len(files) + 1)
    return target
