"""The interaction log: hour partitions, durable files, dedup on write (also after a restart) and
on read, and an object-store URL (fsspec's in-memory filesystem: a real filesystem
implementation behind the same pyarrow/fsspec layer an s3:// URL uses; S3 itself is not reachable here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cascade.errors import InvalidInputError
from cascade.events.batch import EventBatch
from cascade.events.log import InteractionLog, partition_of, read_log

T = 1_700_000_000  # 2023-11-14 22:13:20 UTC


def batch(user: int, items: list[int], times: list[int]) -> EventBatch:
    return EventBatch(user, np.array(items, np.int64), np.array(times, np.int64), np.ones(len(items), np.float32))


def test_partitions_by_event_hour(tmp_path: Path) -> None:
    log = InteractionLog(tmp_path / "log")
    result = log.append(batch(1, [10, 20], [T, T + 3600]))
    assert result.n_new == 2 and len(result.files) == 2
    assert partition_of(T) == "date=2023-11-14/hour=22"
    assert sorted(p.parent.relative_to(tmp_path / "log").as_posix() for p in (tmp_path / "log").rglob("*.parquet")) == [
        "date=2023-11-14/hour=22", "date=2023-11-14/hour=23"]
    assert not list((tmp_path / "log").rglob(".*tmp"))


def test_dedup_within_batch_across_batches_and_after_restart(tmp_path: Path) -> None:
    log = InteractionLog(tmp_path / "log")
    first = log.append(batch(1, [10, 10, 20], [T, T, T]))
    assert first.new.tolist() == [True, False, True]
    log.commit(batch(1, [10, 10, 20], [T, T, T]), first.new)
    again = log.append(batch(1, [10, 30], [T, T]))
    assert again.new.tolist() == [False, True]
    restarted = InteractionLog(tmp_path / "log")  # reads the partition's keys from its files
    assert restarted.append(batch(1, [10, 20, 30, 10], [T, T, T, T + 1])).new.tolist() == [False, False, False, True]
    frame = read_log(tmp_path / "log")
    assert list(zip(frame.user_id, frame.item_id, frame.timestamp)) == [(1, 10, T), (1, 20, T), (1, 30, T), (1, 10, T + 1)]


def test_uncommitted_batch_is_logged_again_on_retry_and_read_once(tmp_path: Path) -> None:
    """A push that failed after the log write is retried: the events are written again (at least
    once) and read back once."""
    log = InteractionLog(tmp_path / "log")
    events = batch(2, [10], [T])
    assert log.append(events).n_new == 1  # no commit: the feature push "failed"
    retry = log.append(events)
    assert retry.n_new == 1
    log.commit(events, retry.new)
    assert len(list((tmp_path / "log").rglob("*.parquet"))) == 2
    assert len(read_log(tmp_path / "log")) == 1


def test_read_range_prunes_by_time(tmp_path: Path) -> None:
    log = InteractionLog(tmp_path / "log")
    log.append(batch(1, [10, 20, 30], [T, T + 7200, T + 86400]))
    frame = read_log(tmp_path / "log", start=T + 3600, end=T + 86400)
    assert frame.item_id.tolist() == [20]
    assert read_log(tmp_path / "empty").empty


def test_object_store_url(tmp_path: Path) -> None:
    url = "memory://cascade-test-bucket/events"
    log = InteractionLog(url)
    log.append(batch(3, [10, 20], [T, T]))
    log.append(batch(3, [20], [T]))  # not committed: logged twice, read once
    frame = read_log(url)
    assert frame.item_id.tolist() == [10, 20]
    assert frame.weight.dtype == np.float32


def test_bad_url_is_named() -> None:
    with pytest.raises(InvalidInputError, match="nosuchscheme"):
        InteractionLog("nosuchscheme://x/y")


def test_s3_log_against_the_emulator(moto_s3: str) -> None:
    """The object-store path with an ``s3://`` URL: pyarrow's S3 filesystem talks HTTP to moto's
    S3 EMULATOR (a local server process, fixture ``moto_s3``; real S3 cannot be reached here), as
    the interactions model does with ``CASCADE_INTERACTIONS_INTERACTION_LOG=s3://...`` in the pod."""
    import boto3

    url = "s3://models/interactions"
    log = InteractionLog(url)
    first = log.append(batch(3, [10, 20], [T, T + 3600]))
    log.commit(batch(3, [10, 20], [T, T + 3600]), first.new)
    assert log.append(batch(3, [20], [T + 3600])).n_new == 0  # deduplicated on write
    restarted = InteractionLog(url)  # a new replica: the partition's keys are read back from S3
    assert restarted.append(batch(3, [10, 30], [T, T])).new.tolist() == [False, True]
    keys = sorted(o["Key"] for o in boto3.client("s3", endpoint_url=moto_s3).list_objects_v2(
        Bucket="models", Prefix="interactions/")["Contents"])
    assert len(keys) == 3 and all(k.endswith(".parquet") for k in keys)
    assert {k.rsplit("/", 1)[0] for k in keys} == {"interactions/date=2023-11-14/hour=22",
                                                   "interactions/date=2023-11-14/hour=23"}
    frame = read_log(url)
    assert list(zip(frame.item_id, frame.timestamp)) == [(10, T), (30, T), (20, T + 3600)]
    assert read_log(url, start=T + 3600).item_id.tolist() == [20]


def test_s3_log_without_its_bucket_is_unavailable(moto_s3: str) -> None:
    """A missing bucket (moto's S3 EMULATOR) fails the write with an error naming the log, nothing acknowledged."""
    from cascade.errors import UnavailableError

    with pytest.raises(UnavailableError, match="s3://no-such-bucket/events"):
        InteractionLog("s3://no-such-bucket/events").append(batch(3, [10], [T]))
