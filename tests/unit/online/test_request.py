import numpy as np
import pytest

from cascade.errors import InvalidInputError
from cascade.online.request import parse_request


def _inputs(**overrides):
    base = {"user_id": np.array([5], np.int64), "top_k": np.array([10], np.int32),
            "exclude_item_ids": np.array([], np.int64), "explore": np.array([0.0], np.float32)}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def test_valid_request():
    request = parse_request(_inputs(exclude_item_ids=np.array([3, 4], np.int64)), max_top_k=300, max_explore=MAX_EXPLORE)
    assert request.user_id == 5 and request.top_k == 10 and request.exclude_item_ids.tolist() == [3, 4]


def test_exclude_is_optional():
    assert parse_request(_inputs(exclude_item_ids=None), 300, MAX_EXPLORE).exclude_item_ids.size == 0


@pytest.mark.parametrize("overrides, field", [
    (dict(top_k=np.array([0], np.int32)), "top_k"),
    (dict(top_k=np.array([301], np.int32)), "top_k"),
    (dict(top_k=None), "top_k"),
    (dict(user_id=np.array([-1], np.int64)), "user_id"),
    (dict(user_id=np.array([1, 2], np.int64)), "user_id"),
    (dict(user_id=np.array([1.0])), "user_id"),
    (dict(exclude_item_ids=np.array([-3], np.int64)), "exclude_item_ids"),
    (dict(exclude_item_ids=np.array([0.5])), "exclude_item_ids"),
])
def test_bad_requests_name_the_input(overrides, field):
    with pytest.raises(InvalidInputError, match=f"'{field}'"):
        parse_request(_inputs(**overrides), max_top_k=300, max_explore=MAX_EXPLORE)


MAX_EXPLORE = 10.0


@pytest.mark.parametrize("overrides, field", [
    (dict(explore=np.array([np.nan], np.float32)), "explore"),
    (dict(explore=np.array([-0.5], np.float32)), "explore"),
    (dict(explore=np.array([np.inf], np.float32)), "explore"),
    (dict(explore=np.array([10.5], np.float32)), "explore"),
    (dict(explore=np.array([1, 2], np.int64)), "explore"),
    (dict(explore=None), "explore"),
    (dict(seed=np.array([-2], np.int64)), "seed"),
    (dict(seed=np.array([1.5])), "seed"),
    (dict(seed=np.array([1, 2], np.int64)), "seed"),
])
def test_explore_and_seed_are_validated_at_the_entry(overrides, field):
    inputs = _inputs(explore=np.array([0.0], np.float32))
    inputs.update({k: v for k, v in overrides.items() if v is not None})
    for k, v in overrides.items():
        if v is None:
            inputs.pop(k)
    with pytest.raises(InvalidInputError, match=f"'{field}'"):
        parse_request(inputs, max_top_k=300, max_explore=MAX_EXPLORE)


def test_explore_and_seed_pass_through():
    request = parse_request(_inputs(explore=np.array([2.5], np.float32), seed=np.array([7], np.int64)), 300, MAX_EXPLORE)
    assert request.explore == 2.5 and request.seed == 7
    fresh = parse_request(_inputs(explore=np.array([1.0], np.float32), seed=np.array([-1], np.int64)), 300, MAX_EXPLORE)
    assert fresh.seed is None  # -1 (seed_used of a deterministic answer) = draw a fresh seed
