"""The assignment function (the one the router, SRM check and report use) and the SRM check."""

from __future__ import annotations

import numpy as np
import pytest

from cascade.experiments.assign import assign, assign_many, bucket
from cascade.experiments.readings import srm


def test_ten_thousand_users_split_half_and_half_and_stay_sticky() -> None:
    users = np.random.default_rng(16).choice(10**12, size=10_000, replace=False)
    first = assign_many(users, "salt-16", 0.5)
    share = float(np.mean(first == "treatment"))
    assert 0.48 <= share <= 0.52
    for _ in range(3):  # 100 % sticky across repeats
        assert (assign_many(users, "salt-16", 0.5) == first).all()
    check = srm(float(np.sum(first == "control")), float(np.sum(first == "treatment")), 0.5)
    assert check is not None and not check.mismatch and check.n == 10_000


def test_salt_changes_the_split_and_a_higher_share_only_adds_users() -> None:
    users = range(5_000)
    a, b = assign_many(users, "one", 0.5), assign_many(users, "two", 0.5)
    assert 0.4 < np.mean(a == b) < 0.6  # independent splits
    low, high = assign_many(users, "one", 0.1), assign_many(users, "one", 0.6)
    assert not ((low == "treatment") & (high == "control")).any()  # canary steps never move a user back
    assert all(assign(u, "one", 0.0) == "control" and assign(u, "one", 1.0) == "treatment" for u in range(100))
    assert all(0.0 <= bucket(u, "one") < 1.0 for u in range(100))


def test_a_skewed_split_is_flagged() -> None:
    users = range(10_000)
    variants = assign_many(users, "s", 0.5)
    control = float(np.sum(variants == "control"))
    treatment = float(np.sum(variants == "treatment"))
    assert not srm(control, treatment, 0.5).mismatch
    lost = srm(control, treatment * 0.9, 0.5)  # 10 % of treatment requests lost (e.g. a crashing variant)
    assert lost.mismatch and lost.p_value < 1e-3
    assert srm(0, 0, 0.5) is None and srm(10, 0, 1.0) is None


def test_srm_p_value_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    check = srm(5_100, 4_900, 0.5)
    expected = stats.chisquare([5_100, 4_900], [5_000, 5_000]).pvalue
    assert check.p_value == pytest.approx(expected, rel=1e-9)
