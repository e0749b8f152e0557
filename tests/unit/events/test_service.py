"""Accepting events end to end in process: real Feast (SQLite online store) on the tiny dataset,
the real interaction log on a temp folder. The next online read sees the events."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "features"))
from tiny_dataset import T0, write_tiny_dataset  # noqa: E402

from cascade.errors import InvalidInputError  # noqa: E402
from cascade.events.log import read_log  # noqa: E402
from cascade.events.service import InteractionService  # noqa: E402
from cascade.features.repo import generate_feature_repo  # noqa: E402
from cascade.features.store import apply, materialize  # noqa: E402
from cascade.online.feast_fast import OnlineUserReader  # noqa: E402

NOW = T0 + 1000


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    """One repo and log for the module: each test works on its own users."""
    root = tmp_path_factory.mktemp("events")
    write_tiny_dataset(root / "tiny")
    repo = root / "repo"
    generate_feature_repo(root / "tiny", repo)
    apply(repo)
    materialize(repo)
    service = InteractionService(repo, root / "log", future_tolerance_s=60, clock=lambda: NOW)
    return service, OnlineUserReader(repo), root / "log"


def i64(*v):
    return np.array(v, dtype=np.int64)


def test_events_reach_the_next_online_read(setup) -> None:
    service, reader, log = setup
    before = reader.get(2)  # train: 50 then 40
    assert before.recent_items.tolist() == [40, 50] and before.n_interactions == 2
    result = service.ingest({"user_id": i64(2), "item_ids": i64(10, 60), "timestamps": i64(NOW - 5, NOW - 10)})
    assert (result.accepted, result.duplicates, result.n_interactions) == (2, 0, 4)
    after = reader.get(2)
    assert after.recent_items.tolist() == [10, 60, 40, 50]  # newest first by event time
    assert after.seen_items.tolist() == [10, 40, 50, 60]
    assert after.n_interactions == 4
    assert after.attributes == before.attributes  # the profile is kept
    logged = read_log(log)
    assert logged[logged.user_id == 2][["item_id", "timestamp"]].values.tolist() == [[60, NOW - 10], [10, NOW - 5]]


def test_retry_is_deduplicated(setup) -> None:
    service, reader, log = setup
    events = {"user_id": i64(1), "item_ids": i64(50), "timestamps": i64(NOW)}
    first = service.ingest(events)
    again = service.ingest(events)
    assert (first.accepted, again.accepted, again.duplicates) == (1, 0, 1)
    assert again.n_interactions == first.n_interactions == reader.get(1).n_interactions
    logged = read_log(log)
    assert len(logged[(logged.user_id == 1) & (logged.item_id == 50)]) == 1


def test_unknown_user_is_created(setup) -> None:
    service, reader, _ = setup
    assert not reader.get(777).known
    service.ingest({"user_id": i64(777), "item_ids": i64(20)})
    user = reader.get(777)
    assert user.known and user.seen_items.tolist() == [20] and user.n_interactions == 1
    assert all(v is None for v in user.attributes.values())


def test_a_bad_row_applies_nothing(setup) -> None:
    service, reader, log = setup
    before, logged = reader.get(1), len(read_log(log))
    with pytest.raises(InvalidInputError, match=r"row 1: item_ids\[1\] = 999 is not in the catalog"):
        service.ingest({"user_id": i64(1), "item_ids": i64(20, 999)})
    with pytest.raises(InvalidInputError, match="in the future"):
        service.ingest({"user_id": i64(1), "item_ids": i64(20), "timestamps": i64(NOW + 3600)})
    after = reader.get(1)
    assert after.n_interactions == before.n_interactions
    assert after.seen_items.tolist() == before.seen_items.tolist()
    assert len(read_log(log)) == logged
