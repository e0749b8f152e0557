"""Deterministic request sampling for load tests and benchmarks.

- :func:`load_ids` reads known user (or item) ids from a dataset folder (``users.parquet`` /
  ``items.parquet``) or a file (``.txt``/``.csv`` one id per line, ``.npy``, ``.parquet`` with the
  id column).
- :class:`ZipfSampler` draws ids with P(rank r) proportional to 1 / r**s; ranks are assigned to
  ids by a seeded permutation, so popularity is not correlated with id order.
- :class:`RequestSampler` mixes known users (Zipf) with a share of unknown users (ids guaranteed
  absent from the known set) and optional exclude ids / exploration, all from one seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cascade.errors import InvalidInputError, NotFoundError

UNKNOWN_ID_SPAN = 1_000_000_000  # unknown ids are drawn from (max known id, max + span]


def _column_from_parquet(path: Path, column: str) -> np.ndarray:
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=[column])
    return np.asarray(table.column(column).to_numpy(), dtype=np.int64)


def load_ids(source: str | Path, entity: str = "user") -> np.ndarray:
    """Unique int64 ids (input order kept) of ``entity`` ("user" or "item") from ``source``.

    ``source`` is a dataset folder (reads ``<entity>s.parquet``, column ``<entity>_id``) or a
    file: ``.parquet`` (column ``<entity>_id``), ``.npy``, or text (one integer per line, lines
    starting with '#' and a non-numeric header line are skipped).
    """
    path = Path(source)
    column = f"{entity}_id"
    if path.is_dir():
        table = path / f"{entity}s.parquet"
        if not table.is_file():
            raise NotFoundError(
                f"{path} is a folder without {table.name}; expected a dataset folder "
                f"(dataset.json + users.parquet + items.parquet) or a file of {entity} ids"
            )
        ids = _column_from_parquet(table, column)
    elif not path.is_file():
        raise NotFoundError(f"{entity} ids: {path} does not exist (expected a dataset folder or file)")
    elif path.suffix == ".parquet":
        ids = _column_from_parquet(path, column)
    elif path.suffix == ".npy":
        ids = np.asarray(np.load(path), dtype=np.int64).ravel()
    else:
        ids = _parse_text_ids(path)
    if ids.size == 0:
        raise InvalidInputError(f"{entity} ids: {path} holds no ids")
    _, first = np.unique(ids, return_index=True)
    return ids[np.sort(first)]


def _parse_text_ids(path: Path) -> np.ndarray:
    values: list[int] = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split(",")[0].strip()
        if not line or line.startswith("#"):
            continue
        try:
            values.append(int(line))
        except ValueError:
            if values or number > 1:
                raise InvalidInputError(
                    f"{path}:{number}: expected one integer id per line, got {raw!r}"
                ) from None
    return np.asarray(values, dtype=np.int64)


class ZipfSampler:
    """Draw ids with P(rank r) = r**-s / H(N, s), ranks assigned by a seeded permutation."""

    def __init__(self, ids: Sequence[int] | np.ndarray, exponent: float = 1.1, seed: int = 0) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        if ids.ndim != 1 or ids.size == 0:
            raise InvalidInputError(f"ids: expected a non-empty 1-D sequence, got shape {ids.shape}")
        if not exponent >= 0.0:
            raise InvalidInputError(f"exponent: expected a number >= 0, got {exponent}")
        self.exponent = float(exponent)
        self._rng = np.random.default_rng(seed)
        self.ids_by_rank = ids[self._rng.permutation(ids.size)]
        weights = np.arange(1, ids.size + 1, dtype=np.float64) ** -self.exponent
        self.probabilities = weights / weights.sum()
        self._cdf = np.cumsum(self.probabilities)
        self._cdf[-1] = 1.0

    def sample(self, n: int) -> np.ndarray:
        """``n`` ids (int64)."""
        ranks = np.searchsorted(self._cdf, self._rng.random(n), side="right")
        return self.ids_by_rank[np.minimum(ranks, self.ids_by_rank.size - 1)]


@dataclass(frozen=True)
class RecommendRequest:
    """One ``recommend`` request; ``known`` says whether ``user_id`` is in the dataset."""

    user_id: int
    top_k: int
    exclude_item_ids: np.ndarray
    explore: float
    seed: int | None
    known: bool


@dataclass
class RequestMix:
    """What share of requests carries what. Shares are probabilities in [0, 1]."""

    top_k: int = 10
    unknown_share: float = 0.05
    exclude_share: float = 0.0
    max_exclude: int = 5
    explore_share: float = 0.0
    explore: float = 0.1
    zipf_exponent: float = 1.1
    send_seed: bool = False  # always send a fresh seed (defeats a response cache)

    def validate(self) -> None:
        for name in ("unknown_share", "exclude_share", "explore_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise InvalidInputError(f"{name}: expected a share in [0, 1], got {value}")
        if self.top_k < 1:
            raise InvalidInputError(f"top_k: expected an integer >= 1, got {self.top_k}")
        if self.max_exclude < 1:
            raise InvalidInputError(f"max_exclude: expected an integer >= 1, got {self.max_exclude}")
        if not 0.0 < self.explore <= 1.0:
            raise InvalidInputError(f"explore: expected a value in (0, 1], got {self.explore}")


@dataclass
class RequestSampler:
    """Endless, seeded stream of :class:`RecommendRequest`."""

    user_ids: np.ndarray
    mix: RequestMix = field(default_factory=RequestMix)
    item_ids: np.ndarray | None = None  # exclude ids are drawn from here (else from 1..1000)
    seed: int = 0
    block: int = 1024

    def __post_init__(self) -> None:
        self.mix.validate()
        self.user_ids = np.asarray(self.user_ids, dtype=np.int64)
        self._known = ZipfSampler(self.user_ids, self.mix.zipf_exponent, seed=self.seed)
        self._rng = np.random.default_rng([self.seed, 1])
        self._unknown_base = int(self.user_ids.max()) + 1
        if self._unknown_base > np.iinfo(np.int64).max - UNKNOWN_ID_SPAN:
            raise InvalidInputError("user ids: max id too large to derive unknown ids above it")
        self._items = (np.asarray(self.item_ids, dtype=np.int64) if self.item_ids is not None
                       else np.arange(1, 1001, dtype=np.int64))
        self._buffer: list[RecommendRequest] = []

    def _refill(self) -> None:
        n, mix, rng = self.block, self.mix, self._rng
        users = self._known.sample(n)
        unknown = rng.random(n) < mix.unknown_share
        users = np.where(unknown, self._unknown_base + rng.integers(0, UNKNOWN_ID_SPAN, n), users)
        excl = rng.random(n) < mix.exclude_share
        n_excl = rng.integers(1, mix.max_exclude + 1, n)
        expl = rng.random(n) < mix.explore_share
        seeds = rng.integers(0, 2**62, n)
        empty = np.zeros(0, dtype=np.int64)
        out = []
        for i in range(n):
            exclude = rng.choice(self._items, size=int(n_excl[i])) if excl[i] else empty
            explore = mix.explore if expl[i] else 0.0
            seed = int(seeds[i]) if (expl[i] or mix.send_seed) else None
            out.append(RecommendRequest(int(users[i]), mix.top_k, exclude, explore, seed,
                                        known=not bool(unknown[i])))
        out.reverse()
        self._buffer = out

    def next(self) -> RecommendRequest:
        if not self._buffer:
            self._refill()
        return self._buffer.pop()

    def take(self, n: int) -> list[RecommendRequest]:
        return [self.next() for _ in range(n)]
