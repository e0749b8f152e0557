"""The named methods ``cascade evaluate`` can score, as a registry.

A method is a factory ``(EvaluationContext) -> list[BatchRecommender]`` registered under a name
with :func:`register`; ``cascade evaluate --methods a,b`` builds them in that order (default:
:data:`DEFAULT_METHODS`, each one that applies to the dataset). To add a method, write a factory
in any module imported here and decorate it::

    @register("ease", help="EASE^R, lambda tuned on a validation split carved from train")
    def _ease(ctx: EvaluationContext) -> list[BatchRecommender]:
        return [EaseRecommender.tune(ctx.catalog, ctx.train, seed=ctx.seed)]

The served system is scored through :class:`cascade.online.pipeline.InProcessRecommender`, the same
stage classes the Triton models wrap, loaded from an export (``ctx.recommender()``):

- ``served``: the full pipeline (user features from the export's Feast store, query tower,
  retrieval, item features, transform, DLRM ranking, business rules) at ``explore = 0``, with no
  ``exclude_item_ids``: exactly the request a client sends, so the lists are what the server
  answers. Seen items are dropped by the business rules from the Feast ``seen_items`` (train).
- ``retrieval``: the retrieval stage's merged candidates (ANN + item-to-item + popular, in merge
  order; popular order for cold users), before ranking and business rules: the candidate
  generator on its own.
- ``sources``: each candidate source of the retrieval stage alone (``retrieval: ann``,
  ``retrieval: item2item``; :mod:`cascade.workflows.evaluate_sources`). With ``--ks`` including the
  export's ``n_candidates`` (300), their recall@300 is the candidate recall per source and merged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from cascade.errors import InvalidInputError, NotFoundError
from cascade.workflows.baselines import BatchRecommender, Catalog

if TYPE_CHECKING:  # pragma: no cover
    from cascade.online.pipeline import InProcessRecommender
    from cascade.workflows.dataset import DatasetInfo

Factory = Callable[["EvaluationContext"], list[BatchRecommender]]


@dataclass(frozen=True)
class Method:
    name: str
    factory: Factory
    help: str
    applies: Callable[["EvaluationContext"], bool] = lambda ctx: True
    needs_export: bool = False


METHODS: dict[str, Method] = {}
DEFAULT_METHODS: tuple[str, ...] = ("popularity", "als", "ease", "sources", "retrieval", "served", "oracle")


def register(name: str, *, help: str, applies: Callable[["EvaluationContext"], bool] | None = None,
             needs_export: bool = False) -> Callable[[Factory], Factory]:
    def decorate(factory: Factory) -> Factory:
        if name in METHODS:
            raise ValueError(f"evaluation method {name!r} is registered twice")
        METHODS[name] = Method(name, factory, help, applies or (lambda ctx: True), needs_export)
        return factory

    return decorate


@dataclass
class EvaluationContext:
    """What a method factory may use. The export (and its recommender) is built on first use."""

    data: Path
    info: "DatasetInfo"
    train: pd.DataFrame
    catalog: Catalog
    seed: int = 0
    threads: int = 2
    export_loader: Callable[[], Path] | None = None
    options: dict[str, object] = field(default_factory=dict)

    @cached_property
    def export(self) -> Path:
        if self.export_loader is None:
            raise NotFoundError("this evaluation has no export: pass --export DIR or let evaluate build one")
        return self.export_loader()

    @cached_property
    def recommender(self) -> "InProcessRecommender":
        from cascade.online.pipeline import InProcessRecommender

        return InProcessRecommender.load(self.export)


def parse_methods(text: str | None) -> list[str]:
    """``"popularity,served"`` -> names; InvalidInputError naming --methods for unknown names."""
    if text is None or not text.strip():
        return list(DEFAULT_METHODS)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in METHODS]
    if unknown or not names:
        raise InvalidInputError(
            f"--methods must be a comma-separated subset of {', '.join(METHODS)}; unknown: {', '.join(unknown) or text!r}"
        )
    return list(dict.fromkeys(names))


def build_methods(names: list[str], ctx: EvaluationContext, explicit: bool) -> list[BatchRecommender]:
    """The recommenders of ``names``, in order. A default method that does not apply to the dataset
    (the oracle on imported data) is skipped; an explicitly asked one is an error."""
    out: list[BatchRecommender] = []
    for name in names:
        method = METHODS[name]
        if not method.applies(ctx):
            if explicit:
                raise InvalidInputError(f"--methods {name}: does not apply to dataset {ctx.info.name!r} ({method.help})")
            continue
        out += method.factory(ctx)
    return out


# ------------------------------------------------------------------------------------------------
# The served pipeline


class PipelineMethod:
    """:class:`BatchRecommender` over :meth:`InProcessRecommender.recommend_many` (``stage`` =
    "served" or "retrieval"). ``exclude`` is not sent: the pipeline drops seen items itself from the
    Feast store (train history), exactly as the server does; evaluate counts any leak."""

    def __init__(self, recommender: "InProcessRecommender", stage: str, name: str) -> None:
        self.recommender = recommender
        self.stage = stage
        self.name = name

    def recommend(self, user_ids: np.ndarray, k: int, exclude: list[np.ndarray]) -> np.ndarray:
        if k > self.recommender.max_top_k:
            raise InvalidInputError(
                f"--ks: the largest K ({k}) exceeds what the served pipeline answers (top_k <= "
                f"{self.recommender.max_top_k} = min(1000, the export's n_candidates))"
            )
        answers = self.recommender.recommend_many(user_ids, top_k=k, stage=self.stage)  # type: ignore[arg-type]
        out = np.full((len(answers), k), -1, dtype=np.int64)
        for i, answer in enumerate(answers):
            out[i, :len(answer.item_ids)] = answer.item_ids
        return out

    def details(self) -> dict[str, object]:
        return {"stage": self.stage, "export": str(self.recommender.layout.root),
                "export_version": self.recommender.layout.manifest().version,
                "n_candidates": self.recommender.layout.manifest().n_candidates, "explore": 0.0}


@register("served", help="the full served pipeline (InProcessRecommender over the export), explore = 0",
          needs_export=True)
def _served(ctx: EvaluationContext) -> list[BatchRecommender]:
    return [PipelineMethod(ctx.recommender, "served", "served pipeline")]


@register("retrieval", help="the retrieval stage's merged candidates alone (merge order, no ranking or rules)",
          needs_export=True)
def _retrieval(ctx: EvaluationContext) -> list[BatchRecommender]:
    return [PipelineMethod(ctx.recommender, "retrieval", "retrieval")]


# ------------------------------------------------------------------------------------------------
# Baselines


@register("popularity", help="train interaction count")
def _popularity(ctx: EvaluationContext) -> list[BatchRecommender]:
    from cascade.workflows.baselines import PopularityRecommender

    return [PopularityRecommender.fit(ctx.catalog, ctx.train)]


@register("als", help="implicit ALS, grid-tuned on a validation split carved from train (one row per objective)")
def _als(ctx: EvaluationContext) -> list[BatchRecommender]:
    from cascade.console import console
    from cascade.workflows.baselines import ALSParams, ALSRecommender

    if not ctx.options.get("tune_als", True):
        return [ALSRecommender(ctx.catalog, ALSParams(), seed=ctx.seed, num_threads=ctx.threads).fit(ctx.train)]
    console.print("tuning ALS on a validation split carved from train ...")
    objectives = [str(o) for o in ctx.options.get("als_objectives", ("ndcg@10", "recall@100"))]  # type: ignore[union-attr]
    tuned = ALSRecommender.tune_objectives(ctx.catalog, ctx.train, seed=ctx.seed, num_threads=ctx.threads,
                                           objectives=objectives)
    for als in tuned:
        tuning = als.tuning
        assert tuning is not None
        console.print(f"ALS best for {tuning.objective}: {tuning.best.label() if tuning.best else '?'} "
                      f"({len(tuning.results)} fits, {tuning.seconds:.0f} s)")
    return list(tuned)


@register("ease", help="EASE^R, lambda tuned on a validation split carved from train (catalogs <= 20k items)",
          applies=lambda ctx: len(ctx.catalog) <= _ease_max_items())
def _ease(ctx: EvaluationContext) -> list[BatchRecommender]:
    from cascade.console import console
    from cascade.workflows.baselines import EASERecommender

    console.print("tuning EASE^R lambda on a validation split carved from train ...")
    ease = EASERecommender.tune(ctx.catalog, ctx.train, seed=ctx.seed)
    console.print(f"EASE^R best lambda {ease.lam:g} ({ease.tuning.seconds if ease.tuning else 0:.0f} s)")
    return [ease]


def _ease_max_items() -> int:
    from cascade.workflows.baselines import EASE_MAX_ITEMS

    return EASE_MAX_ITEMS


@register("sources", help="each retrieval candidate source alone: the two-tower ANN, item-to-item neighbours",
          needs_export=True)
def _sources(ctx: EvaluationContext) -> list[BatchRecommender]:
    from cascade.workflows.evaluate_sources import SourceRecommender

    out: list[BatchRecommender] = [SourceRecommender(ctx.recommender, "ann", "retrieval: ann")]
    if ctx.recommender.retrieval.sources.neighbours is not None:
        out.append(SourceRecommender(ctx.recommender, "item2item", "retrieval: item2item"))
    return out


@register("oracle", help="the synthetic generator's true affinities (synthetic per-user datasets only)",
          applies=lambda ctx: bool(ctx.info.has_oracle))
def _oracle(ctx: EvaluationContext) -> list[BatchRecommender]:
    from cascade.workflows.baselines import OracleRecommender

    return [OracleRecommender(ctx.data, ctx.catalog)]
