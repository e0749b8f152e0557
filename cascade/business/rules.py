"""Business rules over ranked candidates: the one definition used by the ``ranking`` Triton
model and by the in-process pipeline.

Order of operations for one request:

1. drop excluded items, items already seen in the training history, unavailable items;
2. add configured boosts (by category and by item id) to the ranking scores;
3. order: by boosted score (``explore == 0``), or by softmax sampling without replacement at
   temperature ``explore`` (the Gumbel-top-k trick, seeded; the seed is returned for replay);
4. category caps ("at most m of one category among the first w positions"): each position inside
   the largest window takes the best-ordered item the caps allow there; an item skipped at one
   position is reconsidered at the next ones and, after the window, skipped items follow in
   order. So ``top_k`` items come back whenever the caps can be met with the eligible candidates.
   With ``explore == 0`` the answer is the score order except that items a cap held back move
   down (so a score may be higher than the one before it);
5. the first ``top_k`` items.

All steps are vectorised except the cap walk, which only visits positions inside the largest cap
window (plus the items it skips).
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass

import numpy as np

from cascade.business.config import BusinessRules
from cascade.errors import InvalidInputError

NO_SEED = -1


@dataclass(frozen=True)
class Candidates:
    """Ranked candidates of one request (all arrays of length N, aligned)."""

    item_ids: np.ndarray  # int64 raw ids
    scores: np.ndarray  # float32 ranking scores (logits)
    categories: np.ndarray  # category value per item (str/bytes/object; None = no category)
    available: np.ndarray  # bool


@dataclass(frozen=True)
class Selection:
    item_ids: np.ndarray  # int64 [<= top_k]
    scores: np.ndarray  # float32, boosted scores of the chosen items
    seed: int  # seed used for exploration, NO_SEED when explore == 0
    n_filtered: int  # candidates dropped by the seen/excluded/unavailable filters


def validate_explore(explore: float, rules: BusinessRules) -> float:
    value = float(explore)
    if not math.isfinite(value) or value < 0.0 or value > rules.max_explore_temperature:
        raise InvalidInputError(
            f"explore must be a finite temperature in [0, {rules.max_explore_temperature}] "
            f"(0 = deterministic ranking), got {explore!r}"
        )
    return value


def new_seed() -> int:
    return secrets.randbits(63)


def _boosted(candidates: Candidates, rules: BusinessRules) -> np.ndarray:
    scores = candidates.scores.astype(np.float32, copy=True)
    if rules.category_boosts and len(scores):
        uniques, inverse = np.unique(candidates.categories.astype(str), return_inverse=True)
        per_unique = np.array([rules.category_boosts.get(u, 0.0) for u in uniques], dtype=np.float32)
        scores += per_unique[inverse]
    if rules.item_boosts and len(scores):
        boost_ids = np.fromiter(rules.item_boosts.keys(), dtype=np.int64)
        boost_values = np.fromiter(rules.item_boosts.values(), dtype=np.float32)
        order = np.argsort(boost_ids)
        boost_ids, boost_values = boost_ids[order], boost_values[order]
        pos = np.clip(np.searchsorted(boost_ids, candidates.item_ids), 0, len(boost_ids) - 1)
        hit = boost_ids[pos] == candidates.item_ids
        scores[hit] += boost_values[pos[hit]]
    return scores


def _order(scores: np.ndarray, explore: float, seed: int) -> np.ndarray:
    if explore == 0.0:
        return np.argsort(-scores, kind="stable")
    rng = np.random.default_rng(seed)
    keys = scores.astype(np.float64) / explore + rng.gumbel(size=len(scores))
    return np.argsort(-keys, kind="stable")


def _allowed(category: object, position: int, rules: BusinessRules, counts: list[dict[object, int]]) -> bool:
    if category is None:
        return True
    return all(
        position >= cap.window or count.get(category, 0) < cap.max_per_category
        for cap, count in zip(rules.category_caps, counts)
    )


def _apply_caps(order: np.ndarray, categories: np.ndarray, rules: BusinessRules, top_k: int) -> np.ndarray:
    """Fill each position inside the largest cap window with the best-ordered item the caps allow
    there, reconsidering items skipped at earlier positions first (they precede the unvisited ones
    in the order); after the window, skipped and unvisited items follow in order. So an item is
    only dropped when no later position could take it: the answer has ``top_k`` items whenever
    the caps can be met with the eligible candidates."""
    if not rules.category_caps or len(order) == 0:
        return order[:top_k]
    horizon = min(max(cap.window for cap in rules.category_caps), top_k)
    picked: list[int] = []
    pending: list[int] = []  # skipped at an earlier position, in order
    counts: list[dict[object, int]] = [dict() for _ in rules.category_caps]
    cursor = 0
    while len(picked) < horizon:
        position = len(picked)
        chosen = next((j for j, c in enumerate(pending) if _allowed(categories[c], position, rules, counts)), None)
        if chosen is not None:
            candidate = pending.pop(chosen)
        else:
            while cursor < len(order) and not _allowed(categories[order[cursor]], position, rules, counts):
                pending.append(int(order[cursor]))
                cursor += 1
            if cursor == len(order):
                break  # nothing left that the caps allow here: positions only advance by picking
            candidate = int(order[cursor])
            cursor += 1
        picked.append(candidate)
        category = categories[candidate]
        if category is not None:
            for cap, count in zip(rules.category_caps, counts):
                if position < cap.window:
                    count[category] = count.get(category, 0) + 1
    if len(picked) < horizon:  # the caps cannot be met further: skipped items stay out
        return np.asarray(picked, dtype=np.int64)
    rest = np.concatenate([np.asarray(pending, dtype=np.int64), order[cursor:].astype(np.int64)])
    return np.concatenate([np.asarray(picked, dtype=np.int64), rest[: top_k - len(picked)]])


def select(
    candidates: Candidates,
    *,
    top_k: int,
    seen: np.ndarray,
    exclude: np.ndarray,
    explore: float,
    seed: int | None,
    rules: BusinessRules,
) -> Selection:
    """Apply the business rules to one request's ranked candidates."""
    explore = validate_explore(explore, rules)
    keep = ~np.isin(candidates.item_ids, exclude)
    if rules.drop_seen and len(seen):
        keep &= ~np.isin(candidates.item_ids, seen)
    if rules.drop_unavailable:
        keep &= candidates.available.astype(bool)
    n_filtered = int(len(keep) - keep.sum())
    kept = Candidates(
        item_ids=candidates.item_ids[keep],
        scores=candidates.scores[keep],
        categories=candidates.categories[keep],
        available=candidates.available[keep],
    )
    used_seed = NO_SEED
    if explore > 0.0:
        used_seed = int(seed) if seed is not None and seed >= 0 else new_seed()
    scores = _boosted(kept, rules)
    order = _order(scores, explore, used_seed)
    chosen = _apply_caps(order, kept.categories, rules, top_k)
    return Selection(
        item_ids=kept.item_ids[chosen].astype(np.int64),
        scores=scores[chosen].astype(np.float32),
        seed=used_seed,
        n_filtered=n_filtered,
    )
