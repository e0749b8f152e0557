"""Synthetic dataset with learnable structure, written as a canonical dataset folder.

Generative story (every draw seeded):

* **Items** get a category (uneven category sizes), a brand belonging to that category (Zipf
  within the category), a latent factor = category centroid + brand offset + noise (unit norm),
  a price (category level x brand premium, tied to latent dimension 0), a Zipf popularity bias
  (random rank), and a release time ``first_seen``: ``initial_catalog`` of them before the
  observed window, the rest released uniformly during it. About 2% are ``available=False``.
* **Users** get an age bucket and a country (each tilting category preferences and the latent
  vector), an activity level (log-normal) that drives their interaction count (heavy-tailed,
  exact total), a Dirichlet category preference ``p_u``, a base latent vector and a join time.
* **Sessions**: each user's interactions are cut into sessions (geometric lengths). A session's
  category is sticky (kept from the previous session with probability ``stickiness``, else drawn
  from ``p_u``). The user vector random-walks from session to session (``drift``).
* **Items in a session** are drawn without replacement (Gumbel top-k) from the session
  category's *already released* items with logit ``u_s . v_i + bias_i + newness(t - first_seen)``;
  with probability ``explore`` (or when the category has too few released items) an interaction
  is drawn from global popularity among released items instead.

So popularity is a weak baseline, a static factorisation captures ``u_base . v`` and popularity,
and a model using recent history (session category, drifted vector) plus item features (category,
brand, first_seen) can do better still.

Generation runs by chunks of users (about ``chunk_interactions`` rows each), splits each chunk per
user (workflows/split.py) and streams row groups with ``pyarrow.parquet.ParquetWriter``, so memory
is bounded by the chunk size plus O(users + items) arrays.

``DIR/oracle/`` holds the true state at the end of each user's train part; :func:`oracle_scores`
turns it into log-probabilities of the user's next interaction over the catalog.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from cascade.errors import InvalidInputError, NotFoundError
from cascade.workflows.dataset import (
    DatasetInfo,
    DatasetWriter,
    describe_columns,
    interaction_schema,
    write_parquet,
)
from cascade.workflows.split import (
    global_cut_time, is_test_sorted, split_interactions, temporal_order, validate_split, validate_test_fraction,
)

DAY = 86_400
USER_ID_START = 1000
AGE_BUCKETS = ("18-24", "25-34", "35-44", "45-54", "55+")
AGE_PROBS = (0.18, 0.30, 0.24, 0.16, 0.12)
COUNTRIES = ("US", "GB", "DE", "FR", "BR", "IN", "JP", "CA", "ES", "IT", "MX", "AU")
ORACLE_FILES = (
    "user_ids.npy", "user_factors.npy", "user_next_category.npy", "user_time.npy",
    "item_ids.npy", "item_factors.npy", "item_bias.npy", "item_category.npy", "item_first_seen.npy",
    "oracle.json",
)


class SyntheticConfig(BaseModel):
    """Parameters of :func:`generate` (recorded in ``dataset.json`` under ``params``)."""

    n_users: int = Field(20_000, ge=1)
    n_items: int = Field(10_000, ge=1)
    n_interactions: int = Field(1_000_000, ge=1)
    seed: int = 42
    test_fraction: float = 0.2
    split: str = Field("per-user", description="per-user | global-time (workflows/split.py)")
    n_categories: int = Field(20, ge=1)
    n_brands: int = Field(200, ge=1)
    dim: int = Field(16, ge=2)
    days: int = Field(180, ge=1, description="length of the observed window")
    start: int = Field(1_704_067_200, description="window start, unix seconds (2024-01-01 UTC)")
    user_strength: float = 3.0
    zipf_exponent: float = 0.9
    session_mean_length: float = 6.0
    stickiness: float = 0.6
    drift: float = 0.12
    explore: float = 0.1
    newness_boost: float = 1.5
    newness_days: float = 14.0
    initial_catalog: float = Field(0.3, ge=0.0, le=1.0)
    #: Population drift over the window (0 = off; the draws are then exactly as without it): the
    #: session-category preference moves linearly from p_u to a second preference q_u (weight
    #: min(1, drift_strength x t/window)) and each item's popularity logit gains
    #: drift_strength x (2 t/window - 1) x trend_i (trend_i ~ N(0, 1)): some items rise, some fade.
    drift_strength: float = Field(0.0, ge=0.0, le=10.0)
    unavailable_fraction: float = 0.02
    chunk_interactions: int = Field(250_000, ge=1000)


def validate_config(config: SyntheticConfig) -> None:
    """InvalidInputError naming the CLI flag for impossible combinations."""
    validate_test_fraction(config.test_fraction)
    validate_split(config.split)
    if config.n_interactions < config.n_users:
        raise InvalidInputError(
            f"--interactions ({config.n_interactions}) must be at least --users ({config.n_users}): "
            "every user gets at least one interaction"
        )
    if config.n_brands < config.n_categories:
        raise InvalidInputError(
            f"--brands ({config.n_brands}) must be at least --categories ({config.n_categories}): "
            "every category needs a brand"
        )
    if config.n_items < config.n_categories:
        raise InvalidInputError(f"--items ({config.n_items}) must be at least --categories ({config.n_categories})")


# --- items and users (O(n) arrays) --------------------------------------------------------------


class _Items(BaseModel, arbitrary_types_allowed=True):
    ids: np.ndarray  # int64, ascending (= items.parquet order)
    category: np.ndarray  # int32 code
    brand: np.ndarray  # int32 code
    factors: np.ndarray  # float32 [n, d], unit norm
    bias: np.ndarray  # float32 log Zipf popularity
    first_seen: np.ndarray  # int64
    price: np.ndarray  # float32
    available: np.ndarray  # bool
    trend: np.ndarray | None = None  # float32 popularity trend per item (drift only)


def _sparse_ids(rng: np.random.Generator, n: int, low: int, high: int) -> np.ndarray:
    ids = np.unique(rng.integers(low, high, size=int(n * 1.05) + 16, dtype=np.int64))
    while ids.size < n:  # pragma: no cover - only for tiny ranges
        ids = np.unique(np.concatenate([ids, rng.integers(low, high, size=n, dtype=np.int64)]))
    return np.sort(rng.choice(ids, size=n, replace=False))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-9)


def _make_items(config: SyntheticConfig, rng: np.random.Generator, centroids: np.ndarray) -> _Items:
    n, c, d = config.n_items, config.n_categories, config.dim
    brand_category = rng.permutation(np.arange(config.n_brands) % c)
    brand_offset = rng.normal(0.0, 0.5, size=(config.n_brands, d))
    brand_premium = rng.normal(0.0, 0.4, size=config.n_brands)
    category_price = rng.uniform(np.log(5.0), np.log(300.0), size=c)

    category_share = rng.dirichlet(np.full(c, 3.0))
    category = rng.choice(c, size=n, p=category_share).astype(np.int32)
    category[:c] = np.arange(c)  # every category is non-empty
    rng.shuffle(category)
    brand = np.empty(n, dtype=np.int32)
    for k in range(c):
        rows = np.flatnonzero(category == k)
        brands_k = np.flatnonzero(brand_category == k)
        weights = 1.0 / np.arange(1, brands_k.size + 1) ** 1.1
        brand[rows] = rng.choice(brands_k, size=rows.size, p=weights / weights.sum())

    log_price = category_price[category] + brand_premium[brand] + rng.normal(0.0, 0.3, size=n)
    price = np.round(np.exp(log_price), 2).astype(np.float32)
    raw = centroids[category] + brand_offset[brand] + rng.normal(0.0, 0.5, size=(n, d))
    raw[:, 0] += 0.8 * (log_price - log_price.mean()) / max(log_price.std(), 1e-9)
    factors = _unit(raw).astype(np.float32)

    rank = rng.permutation(n) + 1
    bias = -config.zipf_exponent * np.log(rank)
    bias = (bias - bias.mean()).astype(np.float32)

    start, span = config.start, config.days * DAY
    initial = rng.random(n) < config.initial_catalog
    initial[rng.integers(n)] = True  # at least one item exists before the window
    first_seen = np.where(
        initial,
        start - rng.integers(0, 365 * DAY, size=n),
        start + rng.integers(0, span, size=n),
    ).astype(np.int64)
    available = rng.random(n) >= config.unavailable_fraction
    ids = _sparse_ids(rng, n, 10**6, 10**12)
    return _Items(
        ids=ids, category=category, brand=brand, factors=factors, bias=bias,
        first_seen=first_seen, price=price, available=available,
    )


class _Users(BaseModel, arbitrary_types_allowed=True):
    ids: np.ndarray  # int64 ascending
    age: np.ndarray  # int code
    country: np.ndarray  # int code
    activity: np.ndarray  # float32
    counts: np.ndarray  # int64 interactions per user
    preference: np.ndarray  # float64 [n, C] category distribution
    base: np.ndarray  # float64 [n, d]
    join: np.ndarray  # int64
    late_preference: np.ndarray | None = None  # float64 [n, C] category distribution the users drift to


def _make_users(config: SyntheticConfig, rng: np.random.Generator, centroids: np.ndarray) -> _Users:
    n, c, d = config.n_users, config.n_categories, config.dim
    age = rng.choice(len(AGE_BUCKETS), size=n, p=AGE_PROBS)
    country_p = 1.0 / np.arange(1, len(COUNTRIES) + 1)
    country = rng.choice(len(COUNTRIES), size=n, p=country_p / country_p.sum())
    country_taste = rng.dirichlet(np.ones(c), size=len(COUNTRIES))
    age_taste = rng.dirichlet(np.ones(c), size=len(AGE_BUCKETS))
    concentration = 0.3 * c * (0.5 * country_taste[country] + 0.3 * age_taste[age] + 0.2 / c)
    preference = _dirichlet_rows(rng, concentration)

    age_vector = rng.normal(0.0, 0.5, size=(len(AGE_BUCKETS), d))
    unit_centroids = _unit(centroids)
    noise = rng.normal(0.0, 0.7 / np.sqrt(d), size=(n, d))
    base = preference @ unit_centroids + noise + 0.3 * age_vector[age] / np.sqrt(d)
    base = _unit(base) * config.user_strength

    activity = rng.lognormal(0.0, 1.0, size=n)
    counts = 1 + rng.multinomial(config.n_interactions - n, activity / activity.sum()).astype(np.int64)
    join = config.start + rng.integers(0, max(config.days * DAY // 2, 1), size=n)
    return _Users(
        ids=USER_ID_START + np.arange(n, dtype=np.int64), age=age, country=country,
        activity=np.round(activity, 4).astype(np.float32), counts=counts, preference=preference,
        base=base, join=join.astype(np.int64),
    )


def _dirichlet_rows(rng: np.random.Generator, alpha: np.ndarray) -> np.ndarray:
    """One Dirichlet draw per row of ``alpha`` (vectorised via normalised gamma draws)."""
    g = rng.gamma(alpha)
    g = np.maximum(g, 1e-12)
    return g / g.sum(axis=1, keepdims=True)


# --- interactions, one chunk of users at a time -------------------------------------------------


class _Catalog:
    """Per-category and global release-ordered views of the items used by the sampler."""

    def __init__(self, items: _Items, n_categories: int) -> None:
        self.by_category: list[np.ndarray] = []
        for k in range(n_categories):
            rows = np.flatnonzero(items.category == k)
            self.by_category.append(rows[np.argsort(items.first_seen[rows], kind="stable")])
        self.release_order = np.argsort(items.first_seen, kind="stable")
        self.release_sorted = items.first_seen[self.release_order]
        self.popularity_cdf = np.cumsum(np.exp(items.bias[self.release_order].astype(np.float64)))


def _popular_at(rng: np.random.Generator, catalog: _Catalog, times: np.ndarray) -> np.ndarray:
    """Item rows drawn from popularity among items released by each time."""
    released = np.maximum(np.searchsorted(catalog.release_sorted, times, side="right"), 1)
    target = rng.random(times.size) * catalog.popularity_cdf[released - 1]
    picks = np.minimum(np.searchsorted(catalog.popularity_cdf, target, side="right"), released - 1)
    return catalog.release_order[picks]


#: At most this many (session, item) logits are materialised at once by the sampler.
SAMPLER_BLOCK_ELEMENTS = 1 << 20


def _sample_block(
    config: SyntheticConfig, rng: np.random.Generator, items: _Items, pool: np.ndarray,
    vectors: np.ndarray, times: np.ndarray, lengths: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Gumbel top-k without replacement over ``pool`` (one category, release-ordered) per session.

    Returns ``top`` [sessions, m] (pool positions in draw order) and ``usable`` [sessions]: how many
    leading picks are valid (limited by the session length, m and the items released by then).
    """
    first_seen = items.first_seen[pool]
    released = np.searchsorted(first_seen, times, side="right")
    age = (times[:, None] - first_seen[None, :]).astype(np.float32)
    logits = vectors @ items.factors[pool].T + items.bias[pool][None, :]
    if items.trend is not None:  # popularity drift
        phase = 2.0 * _window_fraction(config, times) - 1.0
        logits += (config.drift_strength * phase)[:, None].astype(np.float32) * items.trend[pool][None, :]
    logits += config.newness_boost * np.exp(-np.maximum(age, 0.0) / (config.newness_days * DAY))
    uniform = rng.random(logits.shape, dtype=np.float32)
    logits -= np.log(-np.log(np.maximum(uniform, 1e-12)))
    logits[age < 0] = -np.inf
    m = int(min(lengths.max(), pool.size))
    if m < pool.size:
        top = np.argpartition(-logits, m - 1, axis=1)[:, :m]
    else:
        top = np.broadcast_to(np.arange(pool.size), logits.shape)
    top_values = np.take_along_axis(logits, top, axis=1)
    top = np.take_along_axis(top, np.argsort(-top_values, axis=1, kind="stable"), axis=1)
    return top, np.minimum(np.minimum(lengths, m), released)


def _window_fraction(config: SyntheticConfig, times: np.ndarray) -> np.ndarray:
    """Position of each time in the observed window, clipped to [0, 1]."""
    return np.clip((np.asarray(times, np.float64) - config.start) / (config.days * DAY), 0.0, 1.0)


def _add_drift(config: SyntheticConfig, items: _Items, users: _Users) -> None:
    """Draw the drift state from its own seeded stream (the other draws stay unchanged)."""
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 2]))
    items.trend = rng.normal(0.0, 1.0, size=len(items.ids)).astype(np.float32)
    users.late_preference = _dirichlet_rows(rng, np.full((len(users.ids), config.n_categories), 0.5))


def _segment_starts(groups: np.ndarray) -> np.ndarray:
    """Index of the first element of each run of equal values in ``groups`` (sorted)."""
    return np.concatenate(([0], np.flatnonzero(groups[1:] != groups[:-1]) + 1))


def _chunk(
    config: SyntheticConfig, rng: np.random.Generator, users: _Users, items: _Items, catalog: _Catalog,
    lo: int, hi: int,
) -> dict[str, np.ndarray]:
    counts = users.counts[lo:hi]
    n_local = hi - lo
    total = int(counts.sum())
    row_user = np.repeat(np.arange(n_local), counts)
    user_first_row = np.concatenate(([0], np.cumsum(counts)[:-1]))

    # sessions: geometric lengths, cut per user
    boundary = rng.random(total) < 1.0 / config.session_mean_length
    boundary[user_first_row] = True
    row_session = np.cumsum(boundary) - 1
    session_first_row = np.flatnonzero(boundary)
    n_sessions = session_first_row.size
    session_user = row_user[session_first_row]
    session_length = np.diff(np.append(session_first_row, total))
    user_first_session = _segment_starts(session_user)

    # session start times: sorted uniform in [join, end] per user
    join = users.join[lo:hi]
    end = config.start + config.days * DAY
    raw = join[session_user] + rng.random(n_sessions) * (end - join[session_user])
    raw = raw[np.lexsort((raw, session_user))]
    gaps = rng.exponential(90.0, size=total)
    gaps[session_first_row] = 0.0
    within = np.cumsum(gaps)
    within -= within[session_first_row][row_session]
    row_time = (raw[row_session] + within).astype(np.int64)

    # session category: sticky Markov chain over the user's preference
    if users.late_preference is None:
        session_cdf = np.cumsum(users.preference[lo:hi], axis=1)[session_user]
    else:  # interest drift: p_u -> q_u over the window
        weight = np.minimum(1.0, config.drift_strength * _window_fraction(config, row_time[session_first_row]))[:, None]
        mixed = (1.0 - weight) * users.preference[lo:hi][session_user] + weight * users.late_preference[lo:hi][session_user]
        session_cdf = np.cumsum(mixed, axis=1)
    draw = rng.random(n_sessions)
    candidate = np.minimum((session_cdf < draw[:, None]).sum(axis=1), config.n_categories - 1)
    keep = rng.random(n_sessions) < config.stickiness
    keep[user_first_session] = False
    source = np.maximum.accumulate(np.where(keep, 0, np.arange(n_sessions)))
    session_category = candidate[source]

    # user vector random walk from session to session
    steps = rng.normal(0.0, config.drift, size=(n_sessions, config.dim))
    steps[user_first_session] = 0.0
    walk = np.cumsum(steps, axis=0)
    first_of_session_user = np.repeat(user_first_session, np.diff(np.append(user_first_session, n_sessions)))
    walk -= walk[first_of_session_user]
    session_vector = (users.base[lo:hi][session_user] + walk).astype(np.float32)
    session_time = row_time[session_first_row]

    # items: Gumbel top-k among released items of the session category
    row_item = np.full(total, -1, dtype=np.int64)
    for k in range(config.n_categories):
        pool = catalog.by_category[k]
        in_category = np.flatnonzero(session_category == k)
        if in_category.size == 0 or pool.size == 0:
            continue
        block = max(1, SAMPLER_BLOCK_ELEMENTS // pool.size)  # bounds the [sessions x pool] temporaries
        for begin in range(0, in_category.size, block):
            sessions = in_category[begin:begin + block]
            top, usable = _sample_block(
                config, rng, items, pool, session_vector[sessions], session_time[sessions], session_length[sessions]
            )
            lengths = session_length[sessions]
            owner = np.repeat(np.arange(sessions.size), lengths)
            offset = np.arange(owner.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
            rows = session_first_row[sessions][owner] + offset
            ok = offset < usable[owner]
            row_item[rows[ok]] = pool[top[owner[ok], offset[ok]]]

    fallback = (row_item < 0) | (rng.random(total) < config.explore)
    row_item[fallback] = _popular_at(rng, catalog, row_time[fallback])

    # temporal split within the chunk (every user of the chunk is complete here)
    user_ids = users.ids[lo:hi][row_user]
    order = temporal_order(user_ids, row_time)
    user_ids, row_time, row_item, row_session = user_ids[order], row_time[order], row_item[order], row_session[order]
    test = is_test_sorted(user_ids, config.test_fraction)

    # oracle state at the end of each user's train part
    train_rows = np.flatnonzero(~test)
    local_user = user_ids[train_rows] - users.ids[lo]
    last_train = np.full(n_local, -1, dtype=np.int64)
    last_train[local_user] = train_rows  # rows ascend, so the last write per user wins
    has_train = last_train >= 0
    state_session = row_session[np.where(has_train, last_train, 0)]
    state_vector = np.where(has_train[:, None], session_vector[state_session], users.base[lo:hi]).astype(np.float32)
    preference = users.preference[lo:hi]
    next_category = (1.0 - config.stickiness) * preference
    sticky = np.flatnonzero(has_train)
    next_category[sticky, session_category[state_session[sticky]]] += config.stickiness
    next_category[~has_train] = preference[~has_train]
    state_time = np.where(has_train, row_time[np.where(has_train, last_train, 0)], join)

    return {
        "user_id": user_ids, "item_id": items.ids[row_item], "timestamp": row_time, "test": test,
        "state_vector": state_vector, "next_category": next_category.astype(np.float32),
        "state_time": state_time.astype(np.int64),
    }


# --- writing ------------------------------------------------------------------------------------


def _users_table(users: _Users):
    import pyarrow as pa

    return pa.table({
        "user_id": pa.array(users.ids, pa.int64()),
        "age_bucket": pa.array(np.asarray(AGE_BUCKETS, dtype=object)[users.age], pa.string()),
        "country": pa.array(np.asarray(COUNTRIES, dtype=object)[users.country], pa.string()),
        "activity": pa.array(users.activity, pa.float32()),
    })


def _items_table(items: _Items, n_categories: int):
    import pyarrow as pa

    width = len(str(max(n_categories - 1, 0)))
    category_names = np.asarray([f"category_{k:0{width}d}" for k in range(n_categories)], dtype=object)
    brand_names = np.asarray([f"brand_{b:04d}" for b in range(int(items.brand.max()) + 1)], dtype=object)
    return pa.table({
        "item_id": pa.array(items.ids, pa.int64()),
        "category": pa.array(category_names[items.category], pa.string()),
        "brand": pa.array(brand_names[items.brand], pa.string()),
        "price": pa.array(items.price, pa.float32()),
        "first_seen": pa.array(items.first_seen, pa.int64()),
        "available": pa.array(items.available, pa.bool_()),
    })


def _chunk_bounds(counts: np.ndarray, per_chunk: int) -> list[tuple[int, int]]:
    cumulative = np.cumsum(counts)
    chunk_of_user = (cumulative - 1) // per_chunk
    starts = _segment_starts(chunk_of_user)
    ends = np.append(starts[1:], counts.size)
    return list(zip(starts.tolist(), ends.tolist()))


def generate(out: Path, config: SyntheticConfig, name: str | None = None, progress: bool = True) -> DatasetInfo:
    """Generate a synthetic dataset into ``out`` (atomically, via :class:`DatasetWriter`)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    import pandas as pd

    from cascade.progress import progress_bar

    validate_config(config)
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0]))
    centroids = rng.normal(size=(config.n_categories, config.dim))
    items = _make_items(config, rng, centroids)
    users = _make_users(config, rng, centroids)
    if config.drift_strength > 0:
        _add_drift(config, items, users)
    catalog = _Catalog(items, config.n_categories)
    schema = interaction_schema()

    n_users, d = config.n_users, config.dim
    state_vector = np.zeros((n_users, d), dtype=np.float32)
    next_category = np.zeros((n_users, config.n_categories), dtype=np.float32)
    state_time = np.zeros(n_users, dtype=np.int64)
    n_train = n_test = 0
    t_min, t_max = np.iinfo(np.int64).max, np.iinfo(np.int64).min

    with DatasetWriter(out) as writer:
        paths = writer.paths
        write_parquet(_users_table(users), paths.users)
        write_parquet(_items_table(items, config.n_categories), paths.items)
        bounds = _chunk_bounds(users.counts, config.chunk_interactions)
        with pq.ParquetWriter(paths.train, schema, compression="zstd") as train_writer, \
                pq.ParquetWriter(paths.test, schema, compression="zstd") as test_writer, \
                progress_bar(total=config.n_interactions, unit="rows", desc="generate", enabled=progress) as bar:
            for index, (lo, hi) in enumerate(bounds):
                chunk_rng = np.random.default_rng(np.random.SeedSequence([config.seed, 1, index]))
                part = _chunk(config, chunk_rng, users, items, catalog, lo, hi)
                state_vector[lo:hi] = part["state_vector"]
                next_category[lo:hi] = part["next_category"]
                state_time[lo:hi] = part["state_time"]
                table = pa.table({
                    "user_id": pa.array(part["user_id"], pa.int64()),
                    "item_id": pa.array(part["item_id"], pa.int64()),
                    "timestamp": pa.array(part["timestamp"], pa.int64()),
                    "weight": pa.array(np.ones(part["user_id"].size, dtype=np.float32), pa.float32()),
                }, schema=schema)
                mask = pa.array(part["test"])
                train_part, test_part = table.filter(pc.invert(mask)), table.filter(mask)
                train_writer.write_table(train_part)
                test_writer.write_table(test_part)
                n_train += train_part.num_rows
                n_test += test_part.num_rows
                t_min = min(t_min, int(part["timestamp"].min()))
                t_max = max(t_max, int(part["timestamp"].max()))
                bar.update(part["user_id"].size)

        split_time = None
        if config.split == "global-time":  # re-cut the per-user split at one time (no oracle: its
            # state is "the end of each user's train part" of the per-user split)
            frame = pd.concat([pd.read_parquet(paths.train), pd.read_parquet(paths.test)], ignore_index=True)
            split_time = global_cut_time(frame["timestamp"].to_numpy(), config.test_fraction)
            train_frame, test_frame = split_interactions(frame, config.test_fraction, "global-time")
            for part, path in ((train_frame, paths.train), (test_frame, paths.test)):
                write_parquet(pa.Table.from_pandas(part, schema=schema, preserve_index=False), path)
            n_train, n_test = len(train_frame), len(test_frame)
        return _finish(writer, config, name, out, users, items, state_vector, next_category, state_time,
                       n_users, n_train, n_test, t_min, t_max, split_time)


def _finish(writer, config: SyntheticConfig, name, out, users, items, state_vector, next_category, state_time,
            n_users: int, n_train: int, n_test: int, t_min: int, t_max: int, split_time: int | None) -> DatasetInfo:
    paths = writer.paths
    has_oracle = config.split == "per-user"
    if has_oracle:
        oracle = paths.oracle
        oracle.mkdir()
        np.save(oracle / "user_ids.npy", users.ids)
        np.save(oracle / "user_factors.npy", state_vector)
        np.save(oracle / "user_next_category.npy", next_category)
        np.save(oracle / "user_time.npy", state_time)
        np.save(oracle / "item_ids.npy", items.ids)
        np.save(oracle / "item_factors.npy", items.factors)
        np.save(oracle / "item_bias.npy", items.bias)
        np.save(oracle / "item_category.npy", items.category)
        np.save(oracle / "item_first_seen.npy", items.first_seen)
        (oracle / "oracle.json").write_text(json.dumps({
            "description": "true next-interaction model at the end of each user's train part; "
                           "see cascade.workflows.synthetic.oracle_scores",
            "explore": config.explore, "newness_boost": config.newness_boost,
            "newness_seconds": config.newness_days * DAY, "n_categories": config.n_categories,
        }, indent=2))

    info = DatasetInfo(
        name=name or Path(out).name, source="synthetic", n_users=n_users, n_items=config.n_items,
        n_train=n_train, n_test=n_test, test_fraction=config.test_fraction, time_range=(t_min, t_max),
        user_columns=describe_columns(_users_table(users), "user_id"),
        item_columns=describe_columns(
            _items_table(items, config.n_categories), "item_id", {"first_seen": "timestamp"}
        ),
        split=config.split, split_time=split_time,
        has_oracle=has_oracle, params=config.model_dump(),
    )
    return writer.commit(info)


# --- oracle -------------------------------------------------------------------------------------


def oracle_scores(dataset_dir: Path, user_ids: np.ndarray, batch_elements: int = 1 << 22) -> np.ndarray:
    """True log-probability of each user's next interaction over the catalog.

    Returns float32 ``[len(user_ids), n_items]`` with items in items.parquet order, computed from
    the user's state at the end of their train part: ``log((1 - explore) * sum_k P(k) P(i | k) +
    explore * P_pop(i))`` where ``P(k)`` is the next session's category distribution and
    ``P(i | k)`` the softmax of ``u . v_i + bias_i + newness`` over category ``k``'s items released
    by then. Items not yet released at that time score ``-inf``. Work is batched over users so
    temporaries stay near ``batch_elements`` float64 values each.
    """
    oracle = Path(dataset_dir) / "oracle"
    missing = [f for f in ORACLE_FILES if not (oracle / f).is_file()]
    if missing:
        raise NotFoundError(f"{oracle}: oracle files missing {missing}; only `cascade data generate` writes them")
    meta = json.loads((oracle / "oracle.json").read_text())
    all_users = np.load(oracle / "user_ids.npy")
    wanted = np.asarray(user_ids, dtype=np.int64).ravel()
    rows = np.searchsorted(all_users, wanted)
    rows = np.minimum(rows, all_users.size - 1)
    unknown = wanted[all_users[rows] != wanted]
    if unknown.size:
        raise NotFoundError(f"oracle_scores: user ids not in the dataset: {unknown[:10].tolist()}")

    factors = np.load(oracle / "user_factors.npy")[rows]
    next_category = np.load(oracle / "user_next_category.npy")[rows].astype(np.float64)
    times = np.load(oracle / "user_time.npy")[rows]
    item_factors = np.load(oracle / "item_factors.npy")
    item_bias = np.load(oracle / "item_bias.npy").astype(np.float64)
    item_category = np.load(oracle / "item_category.npy")
    first_seen = np.load(oracle / "item_first_seen.npy")
    n_items, n_categories = item_factors.shape[0], int(meta["n_categories"])
    onehot = np.zeros((n_items, n_categories))
    onehot[np.arange(n_items), item_category] = 1.0
    popularity = np.exp(item_bias)

    out = np.empty((wanted.size, n_items), dtype=np.float32)
    batch_size = max(1, batch_elements // n_items)  # bounds the float64 temporaries
    for start in range(0, wanted.size, batch_size):
        stop = min(start + batch_size, wanted.size)
        age = (times[start:stop, None] - first_seen[None, :]).astype(np.float64)
        released = age >= 0
        logits = factors[start:stop].astype(np.float64) @ item_factors.T.astype(np.float64) + item_bias
        logits += meta["newness_boost"] * np.exp(-np.maximum(age, 0.0) / meta["newness_seconds"])
        logits = np.where(released, logits, -np.inf)
        weights = np.exp(logits - logits.max(axis=1, keepdims=True))
        per_category = weights @ onehot
        p_category = next_category[start:stop]
        personal = weights * (p_category / np.maximum(per_category, 1e-300))[:, item_category]
        lost = (p_category * (per_category <= 0)).sum(axis=1, keepdims=True)  # falls back to popularity
        pop = np.where(released, popularity, 0.0)
        pop /= pop.sum(axis=1, keepdims=True)
        explore = meta["explore"]
        p = (1.0 - explore) * personal + (explore + (1.0 - explore) * lost) * pop
        with np.errstate(divide="ignore"):
            out[start:stop] = np.where(released, np.log(p), -np.inf)
    return out
