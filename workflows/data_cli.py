"""``cascade data``: generate a synthetic dataset or import real interactions (canonical folder)."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Callable, Optional, TypeVar

import typer

from cascade.console import cli_errors
from cascade.errors import InvalidInputError

app = typer.Typer(no_args_is_help=True, help="Generate or import a dataset (canonical folder + temporal split).")

T = TypeVar("T")
EXIT_ERROR = 2


def run_or_exit(work: Callable[[], T]) -> T:
    """Run ``work``; on CascadeError print the message in red to stderr and exit with code 2."""
    with cli_errors(EXIT_ERROR):
        return work()


def _summary(info) -> None:
    typer.echo(
        f"dataset {info.name!r} ({info.source}): {info.n_users} users, {info.n_items} items, "
        f"{info.n_train} train / {info.n_test} test interactions, content_hash {info.content_hash[:12]}"
    )


class SplitOption(str, Enum):
    per_user = "per-user"
    global_time = "global-time"


@app.command()
def generate(
    out: Path = typer.Option(..., "--out", help="Dataset folder to write (replaced atomically)."),
    users: int = typer.Option(20_000, "--users", help="Number of users."),
    items: int = typer.Option(10_000, "--items", help="Number of items."),
    interactions: int = typer.Option(1_000_000, "--interactions", help="Total number of interactions."),
    seed: int = typer.Option(42, "--seed", help="Random seed (same seed, same files)."),
    test_fraction: float = typer.Option(0.2, "--test-fraction", help="Fraction of latest interactions held out, in [0, 1) (per user, or of all with --split global-time)."),
    split: SplitOption = typer.Option("per-user", "--split", help="per-user: each user's latest interactions are test; global-time: everything after one cut time is test (see docs/DESIGN.md)."),
    categories: int = typer.Option(20, "--categories", help="Number of item categories."),
    brands: int = typer.Option(200, "--brands", help="Number of brands (each belongs to one category)."),
    dim: int = typer.Option(16, "--dim", help="Latent factor dimension of the true model."),
    days: int = typer.Option(180, "--days", help="Length of the observed time window in days."),
    drift: float = typer.Option(0.0, "--drift", help="Population drift over the window (0 = none): user interests move to a "
                                "second category preference and item popularity trends up or down; with --initial-catalog "
                                "new items arrive every day."),
    initial_catalog: float = typer.Option(0.3, "--initial-catalog", help="Share of items released before the window; the rest "
                                          "arrive uniformly during it."),
    name: Optional[str] = typer.Option(None, "--name", help="Dataset name (default: folder name)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Synthetic users, items and timestamped interactions with learnable structure (+ oracle)."""

    def work():
        from pydantic import ValidationError

        from cascade.workflows.synthetic import SyntheticConfig, generate as run

        flags = {"n_users": "--users", "n_items": "--items", "n_interactions": "--interactions",
                 "n_categories": "--categories", "n_brands": "--brands", "dim": "--dim", "days": "--days",
                 "drift_strength": "--drift", "initial_catalog": "--initial-catalog"}
        try:
            config = SyntheticConfig(
                n_users=users, n_items=items, n_interactions=interactions, seed=seed, test_fraction=test_fraction,
                split=split.value, n_categories=categories, n_brands=brands, dim=dim, days=days,
                drift_strength=drift, initial_catalog=initial_catalog,
            )
        except ValidationError as error:
            first = error.errors()[0]
            field = str(first["loc"][0])
            raise InvalidInputError(f"{flags.get(field, field)}: {first['msg']}") from None
        return run(out, config, name=name, progress=progress)

    _summary(run_or_exit(work))


class Preset(str, Enum):
    movielens = "movielens"


class TimeFormatOption(str, Enum):
    auto = "auto"
    unix = "unix"
    iso = "iso"


@app.command("import")
def import_(
    out: Path = typer.Option(..., "--out", help="Dataset folder to write (replaced atomically; kept if import fails)."),
    interactions: Optional[Path] = typer.Option(None, "--interactions", help="Interactions file (.csv or .parquet)."),
    users: Optional[Path] = typer.Option(None, "--users", help="Optional user attribute table (.csv or .parquet)."),
    items: Optional[Path] = typer.Option(None, "--items", help="Optional item attribute table; with --preset movielens: movies.csv."),
    user_col: str = typer.Option("user", "--user-col", help="User id column (integer ids)."),
    item_col: str = typer.Option("item", "--item-col", help="Item id column (integer ids)."),
    time_col: str = typer.Option("timestamp", "--time-col", help="Timestamp column."),
    weight_col: Optional[str] = typer.Option(None, "--weight-col", help="Optional weight/rating column (>= 0); default weight 1."),
    time_format: TimeFormatOption = typer.Option(TimeFormatOption.auto, "--time-format", help="unix seconds, ISO-8601 text, or auto-detect."),
    users_id_col: Optional[str] = typer.Option(None, "--users-id-col", help="Id column of --users (default: --user-col)."),
    items_id_col: Optional[str] = typer.Option(None, "--items-id-col", help="Id column of --items (default: --item-col)."),
    test_fraction: float = typer.Option(0.2, "--test-fraction", help="Fraction of latest interactions held out, in [0, 1) (per user, or of all with --split global-time)."),
    split: SplitOption = typer.Option("per-user", "--split", help="per-user: each user's latest interactions are test; global-time: everything after one cut time is test (see docs/DESIGN.md)."),
    name: Optional[str] = typer.Option(None, "--name", help="Dataset name (default: folder name, or 'movielens')."),
    preset: Optional[Preset] = typer.Option(None, "--preset", help="Known layout: movielens (ratings.csv + movies.csv)."),
    ratings: Optional[Path] = typer.Option(None, "--ratings", help="With --preset movielens: ratings.csv."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Import CSV/Parquet interactions (+ attribute tables) into the canonical dataset folder."""

    def work():
        from cascade.workflows import importer

        if preset is Preset.movielens:
            if ratings is None:
                raise InvalidInputError("--preset movielens needs --ratings ratings.csv (userId,movieId,rating,timestamp)")
            if items is None:
                raise InvalidInputError("--preset movielens needs --items movies.csv (movieId,title,genres)")
            return importer.import_movielens(out, ratings, items, test_fraction=test_fraction, split=split.value,
                                             name=name, progress=progress)
        if interactions is None:
            raise InvalidInputError("--interactions FILE is required (or use --preset movielens --ratings FILE)")
        if ratings is not None:
            raise InvalidInputError("--ratings is only used with --preset movielens; use --interactions")
        return importer.import_interactions(
            out, interactions, users=users, items=items, user_col=user_col, item_col=item_col, time_col=time_col,
            weight_col=weight_col, time_format=time_format.value, users_id_col=users_id_col,
            items_id_col=items_id_col, test_fraction=test_fraction, split=split.value, name=name, progress=progress,
        )

    _summary(run_or_exit(work))


if __name__ == "__main__":  # pragma: no cover
    app(sys.argv[1:])
