"""Offline evaluation on the temporal test split: every method, the same users, the same rules.

For each test user: ``seen`` = distinct train items (passed as ``exclude`` to every method),
``relevant`` = distinct test items not in ``seen``. Users whose relevant set is empty are not
evaluated. An optional seeded sample of ``max_users`` of them is drawn once and shared by all
methods. Metrics are those of :mod:`cascade.metrics`. :func:`evaluate` returns an
:class:`EvaluationReport` and, given ``out_dir``, writes ``report.json``, ``report.md`` and
``report.png`` there.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from cascade.errors import InvalidInputError, NotFoundError
from cascade.metrics import DEFINITIONS, METRIC_NAMES, hit_matrix, ranking_metrics
from cascade.workflows.baselines import BatchRecommender, seen_and_relevant
from cascade.workflows.dataset import DatasetInfo, load_dataset

RECOMMEND_BATCH = 2048
REPORT_FILES = ("report.json", "report.md", "report.png")


@dataclass
class MethodResult:
    name: str
    metrics: dict[str, float]
    seconds: float
    seen_leaks: int = 0  # recommended items that were in the user's train history (should be 0)
    short_lists: int = 0  # users that got fewer than max(ks) items
    details: dict[str, object] = field(default_factory=dict)


@dataclass
class EvaluationReport:
    dataset: dict[str, object]
    split: str
    ks: list[int]
    n_eligible_users: int
    n_users: int
    sampled: bool
    seed: int
    n_cold_users: int
    methods: list[MethodResult]
    definitions: dict[str, str] = field(default_factory=lambda: dict(DEFINITIONS))
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def metric_columns(self) -> list[str]:
        return [f"{m}@{k}" for k in self.ks for m in METRIC_NAMES]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def sample_sentence(self) -> str:
        if self.sampled:
            return (
                f"{self.n_users} of {self.n_eligible_users} eligible test users, uniform sample without "
                f"replacement (seed {self.seed})"
            )
        return f"all {self.n_users} eligible test users"

    def to_markdown(self) -> str:
        d = self.dataset
        cols = self.metric_columns()
        lines = [
            f"# Offline evaluation: {d['name']}",
            "",
            f"- dataset: `{d['name']}` ({d['source']}), content hash `{str(d['content_hash'])[:16]}`, "
            f"{d['n_users']} users, {d['n_items']} items, {d['n_train']} train / {d['n_test']} test interactions",
            f"- split: {self.split}",
            f"- users: {self.sample_sentence()}; {self.n_cold_users} of them have no train history",
            f"- k: {', '.join(str(k) for k in self.ks)}",
            f"- created: {self.created_at}",
            "",
            "| method | " + " | ".join(cols) + " | seconds | seen leaks |",
            "|---|" + "---:|" * (len(cols) + 2),
        ]
        for m in self.methods:
            values = " | ".join(f"{m.metrics.get(c, float('nan')):.4f}" for c in cols)
            lines.append(f"| {m.name} | {values} | {m.seconds:.1f} | {m.seen_leaks} |")
        lines += ["", "## Definitions", ""]
        lines += [f"- **{name}**: {text}" for name, text in self.definitions.items()]
        shown: list[object] = []
        for m in self.methods:
            tuning = m.details.get("tuning") if m.details else None
            if not isinstance(tuning, dict):
                continue
            if tuning.get("grid") in shown:  # several objectives tuned on one grid: print it once
                lines += ["", f"## {m.name}: tuned for `{tuning.get('objective')}` on the grid above; "
                              f"best `{tuning.get('best')}`"]
                continue
            shown.append(tuning.get("grid"))
            lines += _tuning_markdown(m.name, tuning)
        lines.append("")
        return "\n".join(lines)

    def save(self, out_dir: Path) -> list[Path]:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / name for name in REPORT_FILES]
        paths[0].write_text(json.dumps(self.to_dict(), indent=2, default=_json_default))
        paths[1].write_text(self.to_markdown())
        plot_report(self, paths[2])
        return paths


def _json_default(value: object) -> object:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _tuning_markdown(name: str, tuning: dict) -> list[str]:
    grid = tuning.get("grid") or []
    if not grid:
        return []
    metric_keys = [k for k in grid[0] if "@" in k]
    param_keys = [k for k in grid[0] if "@" not in k and k != "fit_seconds"]
    lines = [
        "",
        f"## {name}: tuning grid",
        "",
        f"Objective `{tuning.get('objective')}` on a validation split carved from train: {tuning.get('validation')}; "
        f"{tuning.get('n_validation_users')} validation users. Best: `{tuning.get('best')}`. "
        f"Total tuning time (grid + refit on full train): {tuning.get('seconds')} s.",
        "",
        "| " + " | ".join(param_keys + metric_keys + ["fit s"]) + " |",
        "|" + "---|" * (len(param_keys) + len(metric_keys) + 1),
    ]
    for row in grid:
        cells = [str(row[k]) for k in param_keys] + [f"{row[k]:.4f}" for k in metric_keys] + [str(row["fit_seconds"])]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def plot_report(report: EvaluationReport, path: Path) -> None:
    """Grouped bars: one panel per K, metrics on the x axis, one bar per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_methods = max(len(report.methods), 1)
    fig, axes = plt.subplots(1, len(report.ks), figsize=(6 * len(report.ks), 4.2), squeeze=False)
    width = 0.8 / n_methods
    x = np.arange(len(METRIC_NAMES))
    for ax, k in zip(axes[0], report.ks):
        for i, m in enumerate(report.methods):
            values = [m.metrics.get(f"{name}@{k}", np.nan) for name in METRIC_NAMES]
            ax.bar(x + (i - (n_methods - 1) / 2) * width, values, width, label=m.name)
        ax.set_xticks(x, [f"{name}@{k}" for name in METRIC_NAMES], rotation=20)
        ax.set_title(f"K = {k}")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("mean over users")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(f"{report.dataset['name']}: {report.sample_sentence()}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_ks(ks: Sequence[int] | str) -> list[int]:
    """``"10,100"`` or ``(10, 100)`` -> sorted distinct positive ints; InvalidInputError naming --ks."""
    try:
        values = [int(v) for v in (ks.split(",") if isinstance(ks, str) else ks) if str(v).strip()]
    except ValueError:
        raise InvalidInputError(f"--ks must be comma-separated positive integers like 10,100; got {ks!r}") from None
    if not values or min(values) < 1:
        raise InvalidInputError(f"--ks must be comma-separated positive integers like 10,100; got {ks!r}")
    return sorted(set(values))


def evaluate(
    dataset_dir: Path,
    recommenders: Sequence[BatchRecommender],
    ks: Sequence[int] = (10, 100),
    max_users: int | None = None,
    seed: int = 0,
    out_dir: Path | None = None,
    progress: bool = True,
) -> EvaluationReport:
    """Evaluate ``recommenders`` on the dataset's temporal test split (see module docstring)."""
    from cascade.progress import progress_bar

    ks = parse_ks(ks)
    if max_users is not None and max_users < 1:
        raise InvalidInputError(f"--max-users must be a positive integer; got {max_users}")
    if not recommenders:
        raise InvalidInputError("evaluate needs at least one recommender")
    paths, info = load_dataset(Path(dataset_dir))
    train = pd.read_parquet(paths.train, columns=["user_id", "item_id"])
    test = pd.read_parquet(paths.test, columns=["user_id", "item_id"])
    if test.empty:
        raise NotFoundError(
            f"{paths.test} has no rows: evaluation needs a test split (generate/import with --test-fraction > 0)"
        )
    users, seen, relevant = seen_and_relevant(train, test)
    n_eligible = len(users)
    if n_eligible == 0:
        raise InvalidInputError(f"{paths.test}: no test user has a test item outside their train history")
    sampled = max_users is not None and max_users < n_eligible
    if sampled:
        pick = np.sort(np.random.default_rng(seed).choice(n_eligible, size=max_users, replace=False))
        users = users[pick]
        seen = [seen[i] for i in pick]
        relevant = [relevant[i] for i in pick]
    k_max = max(ks)
    results: list[MethodResult] = []
    for rec in recommenders:
        name = str(getattr(rec, "name", type(rec).__name__))
        started = time.perf_counter()
        parts = []
        bar = progress_bar(total=len(users), desc=f"evaluate {name}", unit="users", enabled=progress, leave=False)
        for start in range(0, len(users), RECOMMEND_BATCH):
            stop = min(start + RECOMMEND_BATCH, len(users))
            part = np.asarray(rec.recommend(users[start:stop], k_max, seen[start:stop]))
            if part.shape != (stop - start, k_max) or (part.size and not np.issubdtype(part.dtype, np.integer)):
                raise InvalidInputError(
                    f"recommender {name!r} returned {part.dtype} {part.shape}; expected int64 "
                    f"[{stop - start}, {k_max}] raw item ids (-1 padded)"
                )
            parts.append(part.astype(np.int64, copy=False))
            bar.update(stop - start)
        bar.close()
        recs = np.concatenate(parts) if parts else np.zeros((0, k_max), dtype=np.int64)
        seconds = time.perf_counter() - started
        metrics = ranking_metrics(recs, relevant, ks)
        metrics.pop("n_users", None)
        details = rec.details() if callable(getattr(rec, "details", None)) else {}
        results.append(MethodResult(
            name=name,
            metrics=metrics,
            seconds=round(seconds, 3),
            seen_leaks=int(hit_matrix(recs, seen, k_max).sum()),
            short_lists=int((recs < 0).any(axis=1).sum()),
            details=details,
        ))
    report = EvaluationReport(
        dataset={
            "name": info.name, "source": info.source, "content_hash": info.content_hash,
            "path": str(paths.root), "n_users": info.n_users, "n_items": info.n_items,
            "n_train": info.n_train, "n_test": info.n_test, "test_fraction": info.test_fraction,
            "has_oracle": info.has_oracle,
        },
        split=split_sentence(info),
        ks=ks,
        n_eligible_users=n_eligible,
        n_users=len(users),
        sampled=sampled,
        seed=seed,
        n_cold_users=int(sum(len(s) == 0 for s in seen)),
        methods=results,
    )
    if out_dir is not None:
        report.save(Path(out_dir))
    return report


def split_sentence(info: DatasetInfo) -> str:
    if info.split == "global-time":
        how = (f"global-time: every interaction at or after one cut time T = {info.split_time} is test "
               f"(test_fraction {info.test_fraction} of all interactions)")
    else:
        how = f"per-user temporal: each user's last ceil({info.test_fraction} x n) interactions are test"
    return (f"{how}; seen = distinct train items, never recommended (baselines get them as exclusions, "
            "the served pipeline drops them from its Feast seen_items); relevant = distinct test items not seen in train")


def dataset_key(info: DatasetInfo) -> str:
    """``<name>-<content_hash[:10]>``: the folder name used under build/artifacts and build/evaluation."""
    return f"{info.name}-{info.content_hash[:10]}"
