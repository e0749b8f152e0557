"""The exposure log (real Parquet files through the interaction log's writer) and the exposure
report, checked against counts made by hand with plain loops on the same rows."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from cascade.events.batch import EventBatch
from cascade.events.log import InteractionLog
from cascade.experiments.exposures import Exposure, ExposureWriter, read_exposures
from cascade.experiments.report import outcome_report

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z


def _exposure(user: int, variant: str, second: int, items: list[int], forced: bool = False) -> Exposure:
    return Exposure(second * 1000 + 250, user, "e1", variant, f"bundle-{variant}", forced, np.array(items, np.int64))


def test_writer_round_trip_by_request_hour(tmp_path: Path) -> None:
    written: list[int] = []
    writer = ExposureWriter(tmp_path / "exp", flush_seconds=3600, on_written=written.append)
    rows = [_exposure(1, "control", T0 + 10, [5, 6]), _exposure(2, "treatment", T0 + 3600 + 5, []),
            _exposure(1, "treatment", T0 + 20, [7], forced=True)]
    assert all(writer.submit(r) for r in rows)
    writer.close()
    assert written == [3]
    assert sorted(p.parent.name for p in (tmp_path / "exp").rglob("*.parquet")) == ["hour=00", "hour=01"]  # one file per hour
    frame = read_exposures(tmp_path / "exp")
    assert frame["user_id"].tolist() == [1, 1, 2] and frame["forced"].tolist() == [False, True, False]
    assert [list(x) for x in frame["item_ids"]] == [[5, 6], [7], []]
    assert len(read_exposures(tmp_path / "exp", T0 + 3600, T0 + 7200)) == 1
    assert len(read_exposures(tmp_path / "exp", experiment="other")) == 0


def test_a_full_queue_and_a_broken_store_drop_and_count_never_raise(tmp_path: Path) -> None:
    dropped: list[tuple[str, int]] = []
    warnings: list[str] = []
    writer = ExposureWriter(tmp_path / "exp", max_pending=3, flush_seconds=3600,
                            on_dropped=lambda reason, n: dropped.append((reason, n)), log_warning=warnings.append)
    results = [writer.submit(_exposure(u, "control", T0, [1])) for u in range(5)]
    assert results == [True, True, True, False, False]
    assert dropped == [("queue_full", 1), ("queue_full", 1)]
    (tmp_path / "exp").rmdir()
    (tmp_path / "exp").write_text("not a folder")  # the store breaks: every write now fails
    writer.close()
    assert dropped[-1] == ("write_failed", 3) and "3 exposures dropped" in warnings[0]
    with pytest.raises(ValueError, match="max_pending"):
        ExposureWriter(tmp_path / "other", max_pending=0)


def test_exposure_report_matches_a_hand_count(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    writer = ExposureWriter(tmp_path / "exp", flush_seconds=3600)
    log = InteractionLog(tmp_path / "log", fsync=False)
    exposures: list[Exposure] = []
    events: list[tuple[int, int, int]] = []
    for user in range(60):
        variant = "treatment" if user % 2 else "control"
        for j in range(int(rng.integers(1, 4))):
            second = T0 + 100 * user + 10 * j
            exposures.append(_exposure(user, variant, second, rng.choice(50, 5, replace=False).tolist()))
        shown = exposures[-1]
        if rng.random() < (0.6 if variant == "treatment" else 0.3):  # a click on a shown item, inside the window
            events.append((user, int(shown.item_ids[0]), shown.request_ms // 1000 + int(rng.integers(0, 7200))))
        events.append((user, 999, shown.request_ms // 1000 + 5))  # an item never shown: not a click
        events.append((user, int(shown.item_ids[1]), shown.request_ms // 1000 - 1))  # before the request
        events.append((user, int(shown.item_ids[2]), shown.request_ms // 1000 + 3 * 3600))  # after a 2 h window
    exposures.append(_exposure(1, "treatment", T0 + 50, [1, 2], forced=True))  # QA traffic: excluded
    for row in exposures:
        writer.submit(row)
    writer.close()
    for user, item, ts in events:
        log.append(EventBatch(user, np.array([item]), np.array([ts]), np.ones(1, np.float32)))

    report = outcome_report(str(tmp_path / "log"), exposures=str(tmp_path / "exp"), window_hours=2.0,
                            since="2026-01-01T00:00:00Z", until="2026-01-02T00:00:00Z")
    assert report["method"] == "exposures" and report["forced_exposures_excluded"] == 1
    for variant in ("control", "treatment"):
        mine = [e for e in exposures if e.variant == variant and not e.forced]
        users = sorted({e.user_id for e in mine})
        followed = [e for e in mine if any(u == e.user_id and i in e.item_ids and e.request_ms // 1000 <= t < e.request_ms // 1000 + 7200
                                           for u, i, t in events)]
        clicks = {(u, i, t) for u, i, t in events for e in mine
                  if u == e.user_id and i in e.item_ids and e.request_ms // 1000 <= t < e.request_ms // 1000 + 7200}
        got = report["variants"][variant]
        assert (got["exposed_users"], got["exposures"], got["exposures_followed"], got["clicks"]) == (
            len(users), len(mine), len(followed), len(clicks))
        assert got["follow_rate"] == pytest.approx(len(followed) / len(mine))
        per_user = [sum(1 for c in clicks if c[0] == u) for u in users]
        assert got["clicks_per_exposed_user"] == pytest.approx(np.mean(per_user))
        half = 1.959964 * np.std(per_user, ddof=1) / math.sqrt(len(users))  # over users
        assert got["clicks_per_exposed_user_ci95"] == pytest.approx([np.mean(per_user) - half, np.mean(per_user) + half])
        low, high = got["follow_rate_ci95"]
        assert low < got["follow_rate"] < high and got["bundle"] == f"bundle-{variant}"
    diff = report["difference"]["clicks_per_exposed_user"]
    c, t = report["variants"]["control"], report["variants"]["treatment"]
    assert diff["treatment_minus_control"] == pytest.approx(t["clicks_per_exposed_user"] - c["clicks_per_exposed_user"])
    assert diff["ci95"][0] < diff["treatment_minus_control"] < diff["ci95"][1]


def test_without_exposures_the_engagement_report_runs_and_says_so(tmp_path: Path) -> None:
    log = InteractionLog(tmp_path / "log", fsync=False)
    log.append(EventBatch(3, np.array([1]), np.array([T0 + 5]), np.ones(1, np.float32)))
    ExposureWriter(tmp_path / "exp").close()  # an exposure log with no rows
    report = outcome_report(str(tmp_path / "log"), exposures=str(tmp_path / "exp"), salt="s", share=0.5,
                            since="2026-01-01T00:00:00Z", until="2026-01-02T00:00:00Z")
    assert report["method"] == "per_user_engagement" and "no exposures" in report["exposure_log_status"]
    assert outcome_report(str(tmp_path / "log"), salt="s", share=0.5)["exposure_log_status"].startswith("none configured")


def _status_inputs(tmp_path: Path, share: float, keep_treatment: float, seed: int):
    """An experiment whose exposure log holds seeded users (each with 1-3 requests), of whom only
    ``keep_treatment`` of the treatment users were logged (a variant losing users)."""
    from cascade.experiments.assign import assign
    from cascade.experiments.readings import VariantReading
    from cascade.experiments.state import Experiment

    rng = np.random.default_rng(seed)
    writer = ExposureWriter(tmp_path / f"exp-{seed}", flush_seconds=3600)
    for user in rng.choice(10**9, size=4_000, replace=False).tolist():
        variant = assign(user, "srm", share)
        if variant == "treatment" and rng.random() >= keep_treatment:
            continue
        for j in range(int(rng.integers(1, 4))):  # repeat requests: users, not requests, are counted
            writer.submit(Exposure((T0 + 60 + j) * 1000, user, "e1", variant, "b", False, np.array([1], np.int64)))
    writer.submit(Exposure((T0 + 70) * 1000, 5, "e1", "treatment", "b", True, np.array([1], np.int64)))  # forced
    writer.submit(Exposure((T0 - 600) * 1000, 6, "e1", "treatment", "b", False, np.array([1], np.int64)))  # before the share
    writer.close()
    experiment = Experiment("e1", "srm", share, "a", "b", "2025-12-31T00:00:00+00:00", "2026-01-01T00:00:00+00:00",
                            str(tmp_path / f"exp-{seed}"))
    return experiment, {v: VariantReading() for v in ("control", "treatment")}


@pytest.mark.parametrize("share", [0.5, 0.2])
def test_srm_counts_distinct_users_from_the_exposure_log(tmp_path: Path, share: float) -> None:
    from cascade.experiments.exposures import users_per_variant
    from cascade.experiments.readings import srm
    from cascade.experiments.status import srm_counts

    fair, readings_ = _status_inputs(tmp_path, share, 1.0, 11)
    control, treatment, unit, source = srm_counts(fair, readings_)
    assert unit == "users" and "exposure log" in source
    frame = read_exposures(fair.exposure_log, T0)
    assert (control, treatment) == tuple(float(frame[(frame.variant == v) & ~frame.forced].user_id.nunique())
                                         for v in ("control", "treatment"))
    assert control + treatment < len(frame)  # repeat requests are not counted twice
    assert users_per_variant(frame)["treatment"] == treatment
    assert not srm(control, treatment, share).mismatch
    skewed, readings_ = _status_inputs(tmp_path, share, 0.85, 12)  # 15 % of treatment users lost
    control, treatment, unit, _ = srm_counts(skewed, readings_)
    check = srm(control, treatment, share)
    assert unit == "users" and check.mismatch and check.p_value < 1e-3


def test_srm_falls_back_to_request_counts_and_says_why(tmp_path: Path) -> None:
    from dataclasses import replace

    from cascade.experiments.status import srm_counts

    experiment, readings_ = _status_inputs(tmp_path, 0.5, 1.0, 13)
    readings_["control"].assignments, readings_["treatment"].assignments = 10.0, 12.0
    assert srm_counts(replace(experiment, exposure_log=""), readings_) == (10.0, 12.0, "requests",
                                                                          "router assignment counters (no exposure log configured)")
    empty = srm_counts(replace(experiment, exposure_log=str(tmp_path / "none")), readings_)
    assert empty[2] == "requests" and "no rows" in empty[3]
