"""``cascade experiment status``: the running experiment, its per-variant readings (cumulative,
from the server's metrics) and the sample-ratio-mismatch check on the hash assignments."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from cascade.experiments.readings import SRM_ALPHA, metrics_url_for, readings, scrape, srm
from cascade.experiments.state import running_experiment


def experiment_status(url: str, metrics_url: str | None = None) -> dict[str, Any]:
    from cascade.bundles.state import connect

    experiment = running_experiment(connect(url))
    if experiment is None:
        return {"running": False}
    by_variant = readings(scrape(metrics_url_for(url, metrics_url)), experiment.name)
    check = srm(by_variant["control"].assignments, by_variant["treatment"].assignments, experiment.share)
    return {
        "running": True,
        "experiment": experiment.to_dict(),
        "variants": {v: {"bundle": experiment.bundle_of(v), **r.summary()} for v, r in by_variant.items()},
        "srm": None if check is None else {**asdict(check), "mismatch": check.mismatch, "alpha": SRM_ALPHA},
    }
