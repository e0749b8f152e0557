"""`cascade experiment report` on a real interaction log (Parquet, written by the events code)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cascade.errors import InvalidInputError
from cascade.events.batch import EventBatch
from cascade.events.log import InteractionLog
from cascade.experiments.assign import assign
from cascade.experiments.report import outcome_report

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z


def test_per_variant_engagement_from_the_log(tmp_path: Path) -> None:
    log = InteractionLog(tmp_path / "log", fsync=False)
    rng = np.random.default_rng(3)
    counts: dict[int, int] = {}
    for user in range(200):
        n = int(rng.integers(1, 6)) + (2 if assign(user, "r", 0.5) == "treatment" else 0)  # treatment engages more
        counts[user] = n
        log.append(EventBatch(user, np.arange(n, dtype=np.int64), T0 + 10 + np.arange(n, dtype=np.int64), np.ones(n, np.float32)))
    log.append(EventBatch(999, np.array([1], np.int64), np.array([T0 - 3600], np.int64), np.ones(1, np.float32)))  # before the window
    report = outcome_report(str(tmp_path / "log"), salt="r", share=0.5, since="2026-01-01T00:00:00Z", until="2026-01-02T00:00:00Z")
    for variant in ("control", "treatment"):
        users = [u for u in counts if assign(u, "r", 0.5) == variant]
        got = report["variants"][variant]
        assert got["active_users"] == len(users)
        assert got["interactions"] == sum(counts[u] for u in users)
        assert got["interactions_per_active_user"] == pytest.approx(np.mean([counts[u] for u in users]))
        low, high = got["ci95"]
        assert low < got["interactions_per_active_user"] < high
    diff = report["difference"]
    assert diff["ci95"][0] > 1.0  # +2 per treatment user, clearly resolved
    assert report["events"] == sum(counts.values()) and "no exposure log" in report["counted"]


def test_report_needs_the_experiment(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="--salt and --share"):
        outcome_report(str(tmp_path), salt=None, share=None)
    with pytest.raises(InvalidInputError, match="--since must be an ISO-8601"):
        outcome_report(str(tmp_path), salt="s", share=0.5, since="yesterday")
