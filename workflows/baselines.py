"""Baseline recommenders for offline evaluation: popularity, tuned implicit-feedback ALS, oracle.

Every recommender satisfies :class:`BatchRecommender`: ``recommend(user_ids, k, exclude)`` returns
int64 ``[n_users, k]`` raw item ids, best first, ``-1`` padded, never an id from the user's
``exclude`` array (their seen train items). Score ties are broken by the lower catalog index
(catalog = items.parquet row order), so every list is a strict, reproducible order.

ALS is ``implicit.cpu.als.AlternatingLeastSquares`` on the confidence matrix of Hu, Koren & Volinsky
(2008): ``C_ui = 1 + alpha * w_ui`` for observed pairs (``w`` = summed interaction weight, optionally
BM25- or TF-IDF-reweighted), 1 elsewhere. implicit treats the stored value as ``C_ui`` itself, so
the matrix handed to it already holds ``1 + alpha * w`` and the model's own ``alpha`` stays 1.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Literal, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from cascade.errors import InvalidInputError, NotFoundError
from cascade.ids import Catalog, IdIndex


Weighting = Literal["none", "bm25", "tfidf"]
SCORE_BATCH = 1024


@runtime_checkable
class BatchRecommender(Protocol):
    """What :func:`cascade.workflows.evaluate.evaluate` needs from a method."""

    name: str

    def recommend(self, user_ids: np.ndarray, k: int, exclude: list[np.ndarray]) -> np.ndarray:
        """int64 ``[len(user_ids), k]`` raw item ids, best first, -1 padded; none from ``exclude[i]``."""
        ...


# --------------------------------------------------------------------------------------------------
# Shared helpers


def top_k_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` highest scores per row, best first, ties -> lower index.

    ``-inf`` marks excluded entries: they are returned as -1 (padding). Exact: argpartition, then
    rows whose k-th value is tied outside the selection are redone with a stable full sort.
    """
    scores = np.asarray(scores)
    n_rows, n_cols = scores.shape
    out = np.full((n_rows, k), -1, dtype=np.int64)
    if n_rows == 0 or n_cols == 0 or k <= 0:
        return out
    kk = min(k, n_cols)
    neg = -scores
    if kk < n_cols:
        part = np.argpartition(neg, kk - 1, axis=1)[:, :kk]
    else:
        part = np.broadcast_to(np.arange(n_cols), (n_rows, n_cols)).copy()
    part_neg = np.take_along_axis(neg, part, axis=1)
    order = np.lexsort((part, part_neg), axis=1)  # by -score, then by index
    top = np.take_along_axis(part, order, axis=1)
    if kk < n_cols:
        kth = np.take_along_axis(neg, top[:, -1:], axis=1)
        tied = (neg <= kth).sum(axis=1) > kk  # more candidates at or above the k-th value
        if tied.any():
            rows = np.flatnonzero(tied)
            top[rows] = np.argsort(neg[rows], axis=1, kind="stable")[:, :kk]
    top_scores = np.take_along_axis(scores, top, axis=1)
    out[:, :kk] = np.where(np.isneginf(top_scores), -1, top)
    return out


def _exclusion_mask_rows(catalog: Catalog, exclude: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) pairs of excluded catalog entries for a batch."""
    lengths = np.fromiter((len(e) for e in exclude), dtype=np.int64, count=len(exclude))
    if lengths.sum() == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    flat = np.concatenate([np.asarray(e, dtype=np.int64).ravel() for e in exclude])
    rows = np.repeat(np.arange(len(exclude), dtype=np.int64), lengths)
    cols = catalog.index_of(flat)
    keep = cols >= 0
    return rows[keep], cols[keep]


def _check_request(user_ids: np.ndarray, k: int, exclude: Sequence[np.ndarray]) -> np.ndarray:
    user_ids = np.asarray(user_ids, dtype=np.int64).ravel()
    if int(k) < 1:
        raise InvalidInputError(f"k must be >= 1; got {k}")
    if len(exclude) != len(user_ids):
        raise InvalidInputError(
            f"exclude has {len(exclude)} entries for {len(user_ids)} user_ids; expected one array per user"
        )
    return user_ids


def recommend_from_scores(
    score_fn, catalog: Catalog, user_ids: np.ndarray, k: int, exclude: Sequence[np.ndarray],
    batch_size: int = SCORE_BATCH,
) -> np.ndarray:
    """Run ``score_fn(user_ids_batch) -> float32 [B, n_items]`` in batches, mask ``exclude``, take top k."""
    user_ids = _check_request(user_ids, k, exclude)
    out = np.full((len(user_ids), k), -1, dtype=np.int64)
    for start in range(0, len(user_ids), batch_size):
        stop = min(start + batch_size, len(user_ids))
        scores = np.array(score_fn(user_ids[start:stop]), dtype=np.float32, copy=True)
        if scores.shape != (stop - start, len(catalog)):
            raise InvalidInputError(
                f"scores must have shape ({stop - start}, {len(catalog)}); got {scores.shape}"
            )
        rows, cols = _exclusion_mask_rows(catalog, exclude[start:stop])
        scores[rows, cols] = -np.inf
        out[start:stop] = catalog.raw(top_k_indices(scores, k))
    return out


def read_interactions(path: Path) -> pd.DataFrame:
    if not Path(path).is_file():
        raise NotFoundError(f"{path} is missing; expected a cascade dataset folder")
    frame = pd.read_parquet(path, columns=["user_id", "item_id", "timestamp", "weight"])
    return frame


# --------------------------------------------------------------------------------------------------
# Popularity


class PopularityRecommender:
    """Most interacted-with train items (count of train interactions), minus the user's seen items.

    Count ties are broken by the lower catalog index.
    """

    name = "popularity"

    def __init__(self, catalog: Catalog, counts: np.ndarray) -> None:
        self.catalog = catalog
        counts = np.asarray(counts, dtype=np.float64)
        if counts.shape != (len(catalog),):
            raise InvalidInputError(f"counts must have one entry per catalog item ({len(catalog)}); got {counts.shape}")
        self.counts = counts
        order = np.lexsort((np.arange(len(counts)), -counts))  # by count desc, then index
        # strictly decreasing score per rank, so no ties remain
        self._score = np.empty(len(counts), dtype=np.float32)
        self._score[order] = np.arange(len(counts), 0, -1, dtype=np.float32)

    @classmethod
    def fit(cls, catalog: Catalog, train: pd.DataFrame) -> "PopularityRecommender":
        idx = catalog.index_of(train["item_id"].to_numpy(np.int64))
        if (idx < 0).any():
            bad = train["item_id"].to_numpy()[idx < 0][0]
            raise InvalidInputError(f"train item_id {bad} is not in items.parquet")
        return cls(catalog, np.bincount(idx, minlength=len(catalog)))

    def recommend(self, user_ids: np.ndarray, k: int, exclude: list[np.ndarray]) -> np.ndarray:
        """Walk the global order, skipping each user's excluded items (exact, no score matrix)."""
        user_ids = _check_request(user_ids, k, exclude)
        order = np.argsort(-self._score, kind="stable")  # catalog indices by rank
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        out = np.full((len(user_ids), k), -1, dtype=np.int64)
        for start in range(0, len(user_ids), SCORE_BATCH):
            stop = min(start + SCORE_BATCH, len(user_ids))
            batch_exclude = exclude[start:stop]
            longest = max((len(e) for e in batch_exclude), default=0)
            prefix = min(len(order), k + longest)  # enough candidates even if all excluded are on top
            rows, cols = _exclusion_mask_rows(self.catalog, batch_exclude)
            ranks = rank[cols]
            inside = ranks < prefix
            blocked = np.zeros((stop - start, prefix), dtype=bool)
            blocked[rows[inside], ranks[inside]] = True
            first = np.argsort(blocked, axis=1, kind="stable")[:, :k]  # unblocked ranks first, in order
            ok = ~np.take_along_axis(blocked, first, axis=1)
            width = first.shape[1]
            out[start:stop, :width] = np.where(ok, self.catalog.raw(order[first]), -1)
        return out

    def details(self) -> dict[str, object]:
        return {"scoring": "train interaction count, ties by catalog index"}


# --------------------------------------------------------------------------------------------------
# ALS


@dataclass(frozen=True)
class ALSParams:
    factors: int = 64
    regularization: float = 0.05
    alpha: float = 10.0
    iterations: int = 15
    weighting: Weighting = "none"

    def label(self) -> str:
        return (
            f"factors={self.factors} reg={self.regularization:g} alpha={self.alpha:g} "
            f"iters={self.iterations} weighting={self.weighting}"
        )


SMALL_DATASET = 300_000  # train rows up to which the wide grid runs (about 1 s per fit on MovieLens-100k)


def default_grid(n_train: int | None = None) -> list[ALSParams]:
    """The tuning grid, by dataset size.

    Large (``n_train`` > SMALL_DATASET, e.g. the demo: 20k users, 10k items, 0.8M rows): 18 fits,
    about 2 min with 2 threads: factors 16/32/64 x regularization 3/30/100 x two confidence schemes
    (BM25 (K1=100, B=0.8) with alpha 1, raw weights with alpha 10: the two strong schemes in a
    wider exploration on the demo data). Measured on the demo: 32 beat 64 and 128 at every
    setting and regularization 30 beat 1, hence the grid around them. Small (MovieLens-100k size): 48 fits, about 1 min:
    factors 32/64/128/256 x regularization 10/30/100/300 x (BM25 alpha 1, raw alpha 1, raw alpha 10).
    """
    if n_train is not None and n_train <= SMALL_DATASET:
        schemes: tuple = (("bm25", 1.0), ("none", 1.0), ("none", 10.0))
        factors: tuple = (32, 64, 128, 256)
        regs: tuple = (10.0, 30.0, 100.0, 300.0)
    else:
        schemes = (("bm25", 1.0), ("none", 10.0))
        factors = (16, 32, 64)
        regs = (3.0, 30.0, 100.0)
    return [
        ALSParams(factors=f, regularization=r, alpha=a, iterations=15, weighting=w)
        for f, r, (w, a) in itertools.product(factors, regs, schemes)
    ]


@dataclass
class GridResult:
    params: ALSParams
    metrics: dict[str, float]
    fit_seconds: float

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self.params), **self.metrics, "fit_seconds": round(self.fit_seconds, 3)}


@dataclass
class TuningReport:
    objective: str
    validation: str
    n_validation_users: int
    results: list[GridResult] = field(default_factory=list)
    best: ALSParams | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "objective": self.objective,
            "validation": self.validation,
            "n_validation_users": self.n_validation_users,
            "best": asdict(self.best) if self.best else None,
            "seconds": round(self.seconds, 2),
            "grid": [r.as_dict() for r in self.results],
        }


def confidence_matrix(
    catalog: Catalog, train: pd.DataFrame, alpha: float, weighting: Weighting
) -> tuple["object", np.ndarray]:
    """CSR ``[n_train_users, n_items]`` holding ``1 + alpha * w`` and the raw user id of each row."""
    import scipy.sparse as sp

    if alpha < 0:
        raise InvalidInputError(f"ALS alpha must be >= 0; got {alpha}")
    users, rows = np.unique(train["user_id"].to_numpy(np.int64), return_inverse=True)
    cols = catalog.index_of(train["item_id"].to_numpy(np.int64))
    if (cols < 0).any():
        raise InvalidInputError(f"train item_id {train['item_id'].to_numpy()[cols < 0][0]} is not in items.parquet")
    weight = train["weight"].to_numpy(np.float32) if "weight" in train else np.ones(len(train), np.float32)
    matrix = sp.csr_matrix((weight, (rows, cols)), shape=(len(users), len(catalog)), dtype=np.float32)
    matrix.sum_duplicates()
    matrix.data = np.maximum(matrix.data, 0.0)  # negative weights carry no positive preference
    if weighting == "bm25":
        from implicit.nearest_neighbours import bm25_weight

        matrix = bm25_weight(matrix.T.tocsr(), K1=100, B=0.8).T.tocsr().astype(np.float32)
    elif weighting == "tfidf":
        from implicit.nearest_neighbours import tfidf_weight

        matrix = tfidf_weight(matrix.T.tocsr()).T.tocsr().astype(np.float32)
    elif weighting != "none":
        raise InvalidInputError(f"ALS weighting must be one of none, bm25, tfidf; got {weighting!r}")
    matrix.data = (1.0 + alpha * matrix.data).astype(np.float32)
    return matrix, users


class ALSRecommender:
    """implicit ALS on train confidences; users without train history fall back to popularity."""

    name = "als"

    def __init__(self, catalog: Catalog, params: ALSParams, seed: int = 0, num_threads: int = 2) -> None:
        self.catalog = catalog
        self.params = params
        self.seed = int(seed)
        self.num_threads = int(num_threads)
        self.tuning: TuningReport | None = None
        self._user_ids = np.zeros(0, dtype=np.int64)
        self._user_index = IdIndex(self._user_ids)
        self._user_factors = np.zeros((0, params.factors), dtype=np.float32)
        self._item_factors = np.zeros((len(catalog), params.factors), dtype=np.float32)
        self._fallback: PopularityRecommender | None = None

    def fit(self, train: pd.DataFrame) -> "ALSRecommender":
        from implicit.cpu.als import AlternatingLeastSquares

        if train.empty:
            raise InvalidInputError("cannot fit ALS: the train interactions are empty")
        matrix, users = confidence_matrix(self.catalog, train, self.params.alpha, self.params.weighting)
        from threadpoolctl import threadpool_limits

        # implicit parallelises itself; nested BLAS threads thrash (and implicit warns about it)
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=self.params.factors,
                regularization=self.params.regularization,
                alpha=1.0,  # the matrix already holds 1 + alpha * w
                iterations=self.params.iterations,
                calculate_training_loss=False,
                num_threads=self.num_threads,
                random_state=self.seed,
            )
            model.fit(matrix, show_progress=False)
        self._user_ids = users
        self._user_index = IdIndex(users)
        self._user_factors = np.asarray(model.user_factors, dtype=np.float32)
        self._item_factors = np.asarray(model.item_factors, dtype=np.float32)
        self._fallback = PopularityRecommender.fit(self.catalog, train)
        return self

    def _user_rows(self, user_ids: np.ndarray) -> np.ndarray:
        return self._user_index.rows(user_ids)

    def recommend(self, user_ids: np.ndarray, k: int, exclude: list[np.ndarray]) -> np.ndarray:
        if self._fallback is None:
            raise InvalidInputError("ALSRecommender.recommend called before fit()")
        user_ids = _check_request(user_ids, k, exclude)
        rows = self._user_rows(user_ids)
        known = rows >= 0
        out = np.full((len(user_ids), k), -1, dtype=np.int64)
        if known.any():
            known_idx = np.flatnonzero(known)
            factor_rows = rows[known]

            def score(batch: np.ndarray) -> np.ndarray:  # batch = positions into known_idx
                return self._user_factors[factor_rows[batch]] @ self._item_factors.T

            out[known] = recommend_from_scores(
                score, self.catalog, np.arange(len(known_idx)), k, [exclude[i] for i in known_idx]
            )
        if (~known).any():
            cold = np.flatnonzero(~known)
            out[cold] = self._fallback.recommend(user_ids[cold], k, [exclude[i] for i in cold])
        return out

    def details(self) -> dict[str, object]:
        info: dict[str, object] = {
            "params": asdict(self.params),
            "confidence": "C_ui = 1 + alpha * w_ui (w = summed train weight, after optional bm25/tfidf)",
            "cold_users": "popularity fallback",
            "num_threads": self.num_threads,
            "seed": self.seed,
        }
        if self.tuning is not None:
            info["tuning"] = self.tuning.as_dict()
        return info

    @classmethod
    def tune(
        cls,
        catalog: Catalog,
        train: pd.DataFrame,
        grid: Sequence[ALSParams] | None = None,
        *,
        seed: int = 0,
        num_threads: int = 2,
        validation_fraction: float = 0.2,
        objective: str = "ndcg@10",
        max_validation_users: int | None = 5000,
        progress: bool = True,
    ) -> "ALSRecommender":
        """:meth:`tune_objectives` for one objective."""
        return cls.tune_objectives(
            catalog, train, grid, seed=seed, num_threads=num_threads, validation_fraction=validation_fraction,
            objectives=(objective,), max_validation_users=max_validation_users, progress=progress,
        )[0]

    @classmethod
    def tune_objectives(
        cls,
        catalog: Catalog,
        train: pd.DataFrame,
        grid: Sequence[ALSParams] | None = None,
        *,
        seed: int = 0,
        num_threads: int = 2,
        validation_fraction: float = 0.2,
        objectives: Sequence[str] = ("ndcg@10", "recall@100"),
        max_validation_users: int | None = 5000,
        progress: bool = True,
    ) -> list["ALSRecommender"]:
        """Grid-search on a temporal validation split carved from ``train`` (one pass over the grid)
        and refit, for each objective, its best setting on the full ``train`` (one model per
        objective; with several objectives each is named ``als-<objective>``).

        Validation = each user's last ``ceil(validation_fraction x n)`` train interactions (the same
        rule as the dataset's test split), scored on users that keep at least one fit interaction
        (at most ``max_validation_users`` of them, seeded sample); their fit items are excluded and
        removed from their relevant set. The grid results are kept in ``.tuning``.
        """
        grid = list(grid) if grid is not None else default_grid(len(train))
        if not grid:
            raise InvalidInputError("the ALS grid is empty; give at least one ALSParams")
        if not objectives:
            raise InvalidInputError("give at least one ALS tuning objective")
        ks = sorted({10, 100, *(objective_k(objective) for objective in objectives)})
        started = time.perf_counter()
        split = validation_split(train, validation_fraction, max_validation_users, seed)
        fit_part = split[1]
        report = TuningReport(objectives[0], validation_rule(validation_fraction), len(split[0]))
        report.results = search_grid(
            grid, lambda params: cls(catalog, params, seed=seed, num_threads=num_threads).fit(fit_part),
            split, ks, objective=objectives[0], desc="ALS grid", progress=progress,
        )
        out: list[ALSRecommender] = []
        fitted: dict[ALSParams, ALSRecommender] = {}
        for objective in objectives:
            best = max(report.results, key=lambda r: r.metrics[objective]).params  # first best on ties
            if best not in fitted:
                fitted[best] = cls(catalog, best, seed=seed, num_threads=num_threads).fit(train)
            source = fitted[best]
            final = cls(catalog, best, seed=seed, num_threads=num_threads)
            final.__dict__.update({k: v for k, v in source.__dict__.items() if k != "tuning"})
            if len(objectives) > 1:
                final.name = f"als-{objective}"
            final.tuning = TuningReport(objective, report.validation, report.n_validation_users, report.results, best)
            out.append(final)
        seconds = time.perf_counter() - started
        for model in out:
            assert model.tuning is not None
            model.tuning.seconds = seconds
        return out



# --------------------------------------------------------------------------------------------------
# Tuning on a validation split carved from train (shared by ALS and EASE^R)

TUNING_METRICS = ("recall", "precision", "ndcg", "map", "hit_rate")


def objective_k(objective: str) -> int:
    """The k of a tuning objective such as ``ndcg@10``; a clear error for anything else."""
    metric, _, k_text = objective.partition("@")
    if metric not in TUNING_METRICS or not k_text.isdigit() or int(k_text) < 1:
        raise InvalidInputError(
            f"objective must be <metric>@<k> with metric in {', '.join(TUNING_METRICS)} (e.g. 'ndcg@10'); got {objective!r}"
        )
    return int(k_text)


def validation_rule(validation_fraction: float) -> str:
    return (f"per user, last ceil({validation_fraction} x n) train interactions held out; "
            f"users with >= 1 remaining fit interaction; fit items excluded")


def search_grid(
    settings: Sequence[object],
    fit: Callable[[object], BatchRecommender],
    split: tuple[np.ndarray, pd.DataFrame, list[np.ndarray], list[np.ndarray]],
    ks: Sequence[int],
    *,
    objective: str,
    desc: str,
    progress: bool,
) -> list[GridResult]:
    """Fit each setting on the split's fit part and score it on its validation users (one pass)."""
    from cascade.metrics import ranking_metrics
    from cascade.progress import progress_bar

    val_users, _, exclude, relevant = split
    results: list[GridResult] = []
    bar = progress_bar(settings, desc=desc, enabled=progress, leave=False)
    for params in bar:
        t0 = time.perf_counter()
        model = fit(params)
        fit_seconds = time.perf_counter() - t0
        values = ranking_metrics(model.recommend(val_users, max(ks), exclude), relevant, list(ks))
        values.pop("n_users", None)
        results.append(GridResult(params, values, fit_seconds))  # type: ignore[arg-type]
        bar.set_postfix_str(f"best {objective}={max(r.metrics[objective] for r in results):.4f}")
    return results


# --------------------------------------------------------------------------------------------------
# EASE^R


EASE_MAX_ITEMS = 20_000  # items x items dense: 20k items = 1.6 GB in float32; above it EASE is skipped
EASE_FLOAT64_MAX_ITEMS = 8_000  # float64 up to here, float32 above (halves memory and time)
EASE_LAMBDAS: tuple[float, ...] = (10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0)
EASE_LAMBDAS_LARGE: tuple[float, ...] = (30.0, 300.0, 3000.0, 10000.0)  # above EASE_FLOAT64_MAX_ITEMS items
                                                                       # (each fit is a dense inverse)


def ease_lambdas(n_items: int) -> tuple[float, ...]:
    """The lambda grid: 7 values (10 to 10^4, factor ~3) up to EASE_FLOAT64_MAX_ITEMS items, 4 above."""
    return EASE_LAMBDAS if n_items <= EASE_FLOAT64_MAX_ITEMS else EASE_LAMBDAS_LARGE


def binary_matrix(catalog: Catalog, train: pd.DataFrame) -> tuple["object", np.ndarray]:
    """CSR ``[n_train_users, n_items]`` with 1 for every (user, item) pair in ``train`` (weights
    ignored: every interaction is a positive, as in the evaluation protocol), and the user ids."""
    import scipy.sparse as sp

    users, rows = np.unique(train["user_id"].to_numpy(np.int64), return_inverse=True)
    cols = catalog.index_of(train["item_id"].to_numpy(np.int64))
    if (cols < 0).any():
        raise InvalidInputError(f"train item_id {train['item_id'].to_numpy()[cols < 0][0]} is not in items.parquet")
    matrix = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(users), len(catalog)))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix, users


def ease_gram(matrix: "object") -> np.ndarray:
    """``X^T X`` as a dense array (float64 up to EASE_FLOAT64_MAX_ITEMS items, else float32)."""
    n_items = matrix.shape[1]
    if n_items > EASE_MAX_ITEMS:
        raise InvalidInputError(
            f"EASE^R needs a dense {n_items} x {n_items} matrix; catalogs above {EASE_MAX_ITEMS} items are skipped"
        )
    dtype = np.float64 if n_items <= EASE_FLOAT64_MAX_ITEMS else np.float32
    x = matrix.astype(dtype)
    return np.asarray((x.T @ x).toarray(), dtype=dtype)


def ease_weights(gram: np.ndarray, lam: float) -> np.ndarray:
    """EASE^R item weights (Steck 2019): ``P = (G + lam I)^-1``, ``B = I - P diag(1/diag P)``, i.e.
    ``B_ij = -P_ij / P_jj`` off the diagonal and 0 on it. Inverse from the Cholesky factor
    (LAPACK potrf + potri; G + lam I is symmetric positive definite), about n^3 flops."""
    from scipy.linalg import lapack

    if not lam > 0:
        raise InvalidInputError(f"EASE lambda must be > 0; got {lam}")
    p = np.array(gram, copy=True, order="F")
    p[np.diag_indices_from(p)] += lam
    potrf, potri = lapack.get_lapack_funcs(("potrf", "potri"), (p,))
    factor, info = potrf(p, lower=True, overwrite_a=True, clean=False)  # G + lam I = L L^T
    if info != 0:
        raise InvalidInputError(f"EASE: X^T X + {lam} I is not positive definite (LAPACK potrf info {info})")
    p, info = potri(factor, lower=True, overwrite_c=True)  # (L L^T)^-1, lower triangle only: half the work of a solve
    if info != 0:
        raise InvalidInputError(f"EASE: inverting X^T X + {lam} I failed (LAPACK potri info {info})")
    _mirror_lower(p)
    diag = np.diag(p).copy()
    p /= -diag[None, :]
    p[np.diag_indices_from(p)] = 0.0
    return p.astype(np.float32, copy=False)


def _mirror_lower(p: np.ndarray, block: int = 1024) -> None:
    """Copy the lower triangle of square ``p`` onto its upper triangle, in place, block by block
    (no index arrays of n^2 entries)."""
    n = p.shape[0]
    for lo in range(0, n, block):
        hi = min(lo + block, n)
        p[lo:hi, hi:] = p[hi:, lo:hi].T
        diag = p[lo:hi, lo:hi]
        upper = np.triu_indices(hi - lo, 1)
        diag[upper] = diag.T[upper]


class EASERecommender:
    """EASE^R (Steck 2019, "Embarrassingly Shallow Autoencoders"): scores ``x_u B`` with the closed
    form item-item weights ``B``; users without train history fall back to popularity.

    ``lam`` is tuned by :meth:`tune` on a validation split carved from train by the same rule as
    the ALS tuning. Catalogs above :data:`EASE_MAX_ITEMS` items are refused (dense items x items)."""

    name = "ease"

    def __init__(self, catalog: Catalog, lam: float = 300.0) -> None:
        self.catalog = catalog
        self.lam = float(lam)
        self.tuning: TuningReport | None = None
        self.weights = np.zeros((0, 0), dtype=np.float32)
        self._user_ids = np.zeros(0, dtype=np.int64)
        self._matrix: object | None = None
        self._fallback: PopularityRecommender | None = None

    def fit(self, train: pd.DataFrame, gram: np.ndarray | None = None) -> "EASERecommender":
        if train.empty:
            raise InvalidInputError("cannot fit EASE: the train interactions are empty")
        matrix, users = binary_matrix(self.catalog, train)
        self.weights = ease_weights(ease_gram(matrix) if gram is None else gram, self.lam)
        self._user_ids, self._matrix = users, matrix.tocsr()
        self._fallback = PopularityRecommender.fit(self.catalog, train)
        return self

    def recommend(self, user_ids: np.ndarray, k: int, exclude: list[np.ndarray]) -> np.ndarray:
        if self._fallback is None or self._matrix is None:
            raise InvalidInputError("EASERecommender.recommend called before fit()")
        user_ids = _check_request(user_ids, k, exclude)
        user_rows = IdIndex(self._user_ids).rows(user_ids)
        known = user_rows >= 0
        out = np.full((len(user_ids), k), -1, dtype=np.int64)
        if known.any():
            known_idx = np.flatnonzero(known)
            rows = user_rows[known]
            matrix, weights = self._matrix, self.weights

            def score(batch: np.ndarray) -> np.ndarray:
                return np.asarray(matrix[rows[batch]] @ weights)  # type: ignore[index]

            out[known] = recommend_from_scores(
                score, self.catalog, np.arange(len(known_idx)), k, [exclude[i] for i in known_idx]
            )
        if (~known).any():
            cold = np.flatnonzero(~known)
            out[cold] = self._fallback.recommend(user_ids[cold], k, [exclude[i] for i in cold])
        return out

    def details(self) -> dict[str, object]:
        info: dict[str, object] = {
            "lambda": self.lam,
            "weights": "B = I - P diag(1/diag P), P = (X^T X + lambda I)^-1, X binary user x item (train)",
            "cold_users": "popularity fallback",
            "max_items": EASE_MAX_ITEMS,
        }
        if self.tuning is not None:
            info["tuning"] = self.tuning.as_dict()
        return info

    @classmethod
    def tune(
        cls,
        catalog: Catalog,
        train: pd.DataFrame,
        lambdas: Sequence[float] | None = None,
        *,
        seed: int = 0,
        validation_fraction: float = 0.2,
        objective: str = "ndcg@10",
        max_validation_users: int | None = 5000,
        progress: bool = True,
    ) -> "EASERecommender":
        """Pick ``lam`` on a validation split carved from ``train`` (each user's last
        ``ceil(validation_fraction x n)`` train interactions, as :meth:`ALSRecommender.tune_objectives`),
        maximising ``objective`` (grid: :func:`ease_lambdas`); then refit on all of ``train``."""
        lambdas = [float(v) for v in (ease_lambdas(len(catalog)) if lambdas is None else lambdas)]
        if not lambdas:
            raise InvalidInputError("the EASE lambda grid is empty; give at least one value")
        ks = sorted({10, 100, objective_k(objective)})
        if len(catalog) > EASE_MAX_ITEMS:
            raise InvalidInputError(
                f"EASE^R is skipped above {EASE_MAX_ITEMS} items (dense items x items); this catalog has {len(catalog)}"
            )
        started = time.perf_counter()
        split = validation_split(train, validation_fraction, max_validation_users, seed)
        gram = ease_gram(binary_matrix(catalog, split[1])[0])
        report = TuningReport(objective, validation_rule(validation_fraction), len(split[0]))
        report.results = search_grid(
            [EASEParams(lam) for lam in lambdas], lambda params: cls(catalog, params.lam).fit(split[1], gram=gram),
            split, ks, objective=objective, desc="EASE lambda", progress=progress,
        )
        del gram
        best = max(report.results, key=lambda r: r.metrics[objective]).params  # first best on ties
        final = cls(catalog, best.lam).fit(train)  # type: ignore[attr-defined]
        report.best = best  # type: ignore[assignment]
        report.seconds = time.perf_counter() - started
        final.tuning = report
        return final


@dataclass(frozen=True)
class EASEParams:
    lam: float

    def label(self) -> str:
        return f"lambda={self.lam:g}"


def validation_split(
    train: pd.DataFrame, validation_fraction: float, max_validation_users: int | None, seed: int,
) -> tuple[np.ndarray, pd.DataFrame, list[np.ndarray], list[np.ndarray]]:
    """The tuning split shared by ALS and EASE: (validation users, fit part, their fit items, their
    held-out relevant items). Validation = each user's last ``ceil(validation_fraction x n)`` train
    interactions; users keeping >= 1 fit interaction; at most ``max_validation_users`` (seeded)."""
    from cascade.workflows.split import split_interactions

    fit_part, val_part = split_interactions(train, validation_fraction)
    val_users, exclude, relevant = seen_and_relevant(fit_part, val_part)
    warm = np.flatnonzero([len(e) > 0 for e in exclude])
    val_users = val_users[warm]
    exclude = [exclude[i] for i in warm]
    relevant = [relevant[i] for i in warm]
    if max_validation_users is not None and len(val_users) > max_validation_users:
        pick = np.sort(np.random.default_rng(seed).choice(len(val_users), size=max_validation_users, replace=False))
        val_users = val_users[pick]
        exclude = [exclude[i] for i in pick]
        relevant = [relevant[i] for i in pick]
    if len(val_users) == 0:
        raise InvalidInputError(
            "cannot tune: no user has both fit and validation interactions in train (too few interactions per user)"
        )
    return val_users, fit_part, exclude, relevant


# --------------------------------------------------------------------------------------------------
# Oracle


class OracleRecommender:
    """Ranks by the synthetic generator's true affinities (the ceiling on synthetic data)."""

    name = "oracle"

    def __init__(self, dataset_dir: Path, catalog: Catalog | None = None) -> None:
        from cascade.workflows.dataset import DatasetInfo

        info = DatasetInfo.load(Path(dataset_dir))
        if not info.has_oracle:
            raise NotFoundError(
                f"dataset {dataset_dir} has no oracle (has_oracle is false); only synthetic datasets do"
            )
        self.dataset_dir = Path(dataset_dir)
        self.catalog = catalog or Catalog.from_dataset(dataset_dir)

    def recommend(self, user_ids: np.ndarray, k: int, exclude: list[np.ndarray]) -> np.ndarray:
        from cascade.workflows.synthetic import oracle_scores

        return recommend_from_scores(
            lambda batch: oracle_scores(self.dataset_dir, batch), self.catalog, user_ids, k, exclude
        )

    def details(self) -> dict[str, object]:
        return {"scoring": "true affinities from workflows.synthetic.oracle_scores"}


# --------------------------------------------------------------------------------------------------
# Seen / relevant sets


def group_items(frame: pd.DataFrame) -> tuple[np.ndarray, list[np.ndarray]]:
    """Distinct users (ascending) and each one's distinct items (ascending)."""
    if frame.empty:
        return np.zeros(0, dtype=np.int64), []
    pairs = frame[["user_id", "item_id"]].drop_duplicates().sort_values(["user_id", "item_id"], kind="stable")
    users = pairs["user_id"].to_numpy(np.int64)
    items = pairs["item_id"].to_numpy(np.int64)
    bounds = np.flatnonzero(users[1:] != users[:-1]) + 1
    starts = np.concatenate(([0], bounds))
    return users[starts], np.split(items, bounds)


def seen_and_relevant(
    history: pd.DataFrame, heldout: pd.DataFrame
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """For the held-out users whose relevant set is non-empty: (user ids, seen items, relevant items).

    ``seen`` = the user's distinct ``history`` items (excluded from recommendations); ``relevant`` =
    distinct ``heldout`` items not in ``seen`` (a seen item can never be recommended, so it cannot
    count). Users whose held-out items are all seen are dropped.
    """
    seen_users, seen_items = group_items(history)
    test_users, test_items = group_items(heldout)
    pos = np.searchsorted(seen_users, test_users)
    users: list[int] = []
    seen_out: list[np.ndarray] = []
    rel_out: list[np.ndarray] = []
    empty = np.zeros(0, dtype=np.int64)
    for user, items, p in zip(test_users, test_items, pos):
        seen = seen_items[p] if p < len(seen_users) and seen_users[p] == user else empty
        relevant = np.setdiff1d(items, seen, assume_unique=True)
        if len(relevant):
            users.append(int(user))
            seen_out.append(seen)
            rel_out.append(relevant)
    return np.asarray(users, dtype=np.int64), seen_out, rel_out
