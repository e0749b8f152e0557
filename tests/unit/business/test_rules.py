from pathlib import Path

import numpy as np
import pytest

from cascade.business.config import BusinessRules, CategoryCap
from cascade.business.rules import NO_SEED, Candidates, select
from cascade.errors import InvalidInputError


def _candidates() -> Candidates:
    # ids 10..19, scores descending, categories: first five are "a", then b, c, a, b, c
    ids = np.arange(10, 20, dtype=np.int64)
    scores = np.linspace(1.0, 0.1, 10).astype(np.float32)
    cats = np.array(["a"] * 5 + ["b", "c", "a", "b", "c"], dtype=object)
    available = np.ones(10, dtype=bool)
    return Candidates(ids, scores, cats, available)


def _select(c: Candidates, **kw):
    args = dict(top_k=5, seen=np.array([], np.int64), exclude=np.array([], np.int64), explore=0.0, seed=None,
                rules=BusinessRules())
    args.update(kw)
    return select(c, **args)


def test_category_cap_drops_items_and_keeps_scores_descending():
    out = _select(_candidates())
    # a,a,a then the 4th/5th "a" are dropped; next come b (15) and c (16)
    assert out.item_ids.tolist() == [10, 11, 12, 15, 16]
    assert np.all(np.diff(out.scores) < 0)
    assert out.seed == NO_SEED


def test_filters_seen_excluded_unavailable():
    c = _candidates()
    available = c.available.copy()
    available[5] = False  # item 15
    c = Candidates(c.item_ids, c.scores, c.categories, available)
    out = _select(c, seen=np.array([10], np.int64), exclude=np.array([11, 999], np.int64))
    assert 10 not in out.item_ids and 11 not in out.item_ids and 15 not in out.item_ids
    assert out.n_filtered == 3
    assert out.item_ids.tolist() == [12, 13, 14, 16, 18]


def test_no_caps_returns_top_k_in_score_order():
    out = _select(_candidates(), rules=BusinessRules(category_caps=[]), top_k=4)
    assert out.item_ids.tolist() == [10, 11, 12, 13]


def test_boosts_change_order():
    rules = BusinessRules(category_caps=[], category_boosts={"c": 5.0}, item_boosts={19: 10.0})
    out = _select(_candidates(), rules=rules, top_k=3)
    assert out.item_ids.tolist() == [19, 16, 10]


def test_exploration_is_replayable_and_differs_from_greedy():
    c = _candidates()
    rules = BusinessRules(category_caps=[])
    first = _select(c, explore=2.0, seed=123, rules=rules)
    again = _select(c, explore=2.0, seed=123, rules=rules)
    assert first.seed == 123 and first.item_ids.tolist() == again.item_ids.tolist()
    answers = {tuple(_select(c, explore=2.0, seed=s, rules=rules).item_ids) for s in range(20)}
    assert len(answers) > 1
    fresh = _select(c, explore=2.0, seed=None, rules=rules)
    assert fresh.seed >= 0
    assert _select(c, explore=2.0, seed=fresh.seed, rules=rules).item_ids.tolist() == fresh.item_ids.tolist()


@pytest.mark.parametrize("explore", [float("nan"), -0.5, float("inf"), 11.0])
def test_bad_explore_is_rejected(explore):
    with pytest.raises(InvalidInputError, match="explore"):
        _select(_candidates(), explore=explore)


def test_rules_file_validation(tmp_path: Path):
    bad = tmp_path / "rules.yaml"
    bad.write_text("category_caps:\n  - window: 0\n    max_per_category: 3\nunknown_key: 1\n")
    with pytest.raises(InvalidInputError, match="category_caps.0.window"):
        BusinessRules.load(bad)
    assert BusinessRules.load().category_caps == [CategoryCap(window=5, max_per_category=3)]


def test_category_cap_reconsiders_skipped_items_after_the_window():
    # the case: top_k = 10 and exactly 10 eligible candidates; a a a a a b b b b b.
    # Cap 3-in-5 skips the 4th/5th "a" inside the window; they are allowed from position 5 on,
    # so all 10 come back (before the fix: 8).
    ids = np.arange(10, 20, dtype=np.int64)
    scores = np.linspace(1.0, 0.1, 10).astype(np.float32)
    cats = np.array(["a"] * 5 + ["b"] * 5, dtype=object)
    out = _select(Candidates(ids, scores, cats, np.ones(10, bool)), top_k=10)
    assert len(out.item_ids) == 10
    # window: a a a b b; then the skipped a's and the rest in score order
    assert out.item_ids.tolist() == [10, 11, 12, 15, 16, 13, 14, 17, 18, 19]
    assert sorted(out.item_ids.tolist()) == ids.tolist()


def test_category_cap_refills_positions_inside_a_larger_window_with_skipped_items():
    # caps 1-in-2 and 3-in-6: a skipped item becomes allowed again at a later position in the window
    rules = BusinessRules(category_caps=[CategoryCap(window=2, max_per_category=1),
                                         CategoryCap(window=6, max_per_category=3)])
    ids = np.arange(6, dtype=np.int64)
    scores = np.linspace(1.0, 0.5, 6).astype(np.float32)
    cats = np.array(["a", "a", "a", "b", "b", "b"], dtype=object)
    out = _select(Candidates(ids, scores, cats, np.ones(6, bool)), top_k=6, rules=rules)
    # position 0: a0; position 1: a1 is capped (1 "a" in the first 2) -> b3; position 2: a1 (2nd "a"
    # of 3 allowed in 6) comes back before b4, then a2, b4, b5
    assert out.item_ids.tolist() == [0, 3, 1, 2, 4, 5]


def test_category_cap_never_exceeded_and_answer_short_only_when_cap_cannot_be_met():
    # only one category: positions 3 and 4 can never be filled without breaking "3 in the first 5",
    # so the answer stops at 3 (the rule is hard); adding two "b" items fills the list to top_k.
    ids = np.arange(8, dtype=np.int64)
    scores = np.linspace(1.0, 0.3, 8).astype(np.float32)
    only_a = np.array(["a"] * 8, dtype=object)
    out = _select(Candidates(ids, scores, only_a, np.ones(8, bool)), top_k=8)
    assert out.item_ids.tolist() == [0, 1, 2]
    mixed = only_a.copy()
    mixed[[6, 7]] = "b"
    out = _select(Candidates(ids, scores, mixed, np.ones(8, bool)), top_k=8)
    assert out.item_ids.tolist() == [0, 1, 2, 6, 7, 3, 4, 5]
    first5 = mixed[out.item_ids[:5]]
    assert (first5 == "a").sum() <= 3
