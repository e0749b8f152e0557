"""Publishing a dataset beside its bundle (cascade/events/datasets.py, `cascade release --dataset-url`):
every file under ``<url>/<bundle_id>/``, dataset.json last; an incomplete folder is refused. The
``s3://`` store is the bundle publisher's (tests/integration/test_retrain_cronjob.py runs it on
moto's S3 emulator)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cascade.bundles.publish import FileStore
from cascade.bundles.release import release
from cascade.errors import InvalidInputError, NotFoundError
from cascade.events.datasets import publish_dataset
from cascade.workflows.synthetic import SyntheticConfig, generate


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ds") / "data"
    generate(out, SyntheticConfig(n_users=30, n_items=20, n_interactions=300, seed=1), name="d", progress=False)
    return out


def test_publishes_every_file_with_dataset_json_last(dataset: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[str] = []
    put_file = FileStore.put_file
    monkeypatch.setattr(FileStore, "put_file", lambda self, key, path: (order.append(key), put_file(self, key, path)))
    target = publish_dataset(dataset, f"file://{tmp_path / 'datasets'}", "b-1")
    assert target == f"file://{tmp_path / 'datasets'}/b-1"
    published = tmp_path / "datasets" / "b-1"
    files = sorted(p.relative_to(dataset).as_posix() for p in dataset.rglob("*") if p.is_file())
    assert sorted(p.relative_to(published).as_posix() for p in published.rglob("*") if p.is_file()) == files
    assert all((published / f).read_bytes() == (dataset / f).read_bytes() for f in files)
    assert order[-1] == "b-1/dataset.json" and len(order) == len(files)


def test_incomplete_dataset_is_refused_and_nothing_published(dataset: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "dataset.json").write_bytes((dataset / "dataset.json").read_bytes())
    with pytest.raises(NotFoundError, match="test.parquet|train.parquet|users.parquet|items.parquet"):
        publish_dataset(broken, f"file://{tmp_path / 'datasets'}", "b-1")
    assert not (tmp_path / "datasets").exists()


def test_release_refuses_a_dataset_url_without_a_publish_url(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="--dataset-url .* --publish"):
        release(data=dataset, export=tmp_path, out=None, champion=None, publish_url=None,
                tolerances={"ndcg@10": 0.02}, dataset_url=f"file://{tmp_path / 'datasets'}")
