"""``cascade experiment status``: the running experiment, its per-variant readings (cumulative,
from the server's metrics) and the sample-ratio-mismatch check.

The SRM check counts DISTINCT USERS per variant (the randomisation unit) from the exposure log,
over the exposures since the current share took effect (``share_since``; a share change moves users
between variants, so earlier exposures test another ratio). Without a readable exposure log it
falls back to the router's hash-assignment counters, which count REQUESTS; ``srm.unit`` and
``srm.source`` say which ran.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from cascade.experiments.readings import SRM_ALPHA, metrics_url_for, readings, scrape, srm
from cascade.experiments.state import Experiment, running_experiment

LOG = logging.getLogger(__name__)


def srm_counts(experiment: Experiment, by_variant: dict[str, Any]) -> tuple[float, float, str, str]:
    """(control, treatment, unit, source) for the SRM check: distinct users from the exposure log
    since ``share_since`` when there is one with rows, else requests from the metrics."""
    from cascade.experiments.report import _epoch

    why = "no exposure log configured"
    if experiment.exposure_log:
        from cascade.experiments.exposures import read_exposures, users_per_variant

        try:
            since = _epoch(experiment.share_since or experiment.started_at, "share_since")
            users = users_per_variant(read_exposures(experiment.exposure_log, since, None, experiment.name))
            if sum(users.values()):
                return (float(users["control"]), float(users["treatment"]), "users",
                        f"exposure log {experiment.exposure_log} since {experiment.share_since or experiment.started_at}")
            why = "the exposure log has no rows since the share took effect yet"
        except Exception as error:  # noqa: BLE001 - status must answer; say why it fell back
            LOG.warning("exposure log %s unreadable for the SRM check: %s", experiment.exposure_log, error)
            why = f"the exposure log is unreadable ({error})"
    return (by_variant["control"].assignments, by_variant["treatment"].assignments, "requests",
            f"router assignment counters ({why})")


def experiment_status(url: str, metrics_url: str | None = None) -> dict[str, Any]:
    from cascade.bundles.state import connect

    experiment = running_experiment(connect(url))
    if experiment is None:
        return {"running": False}
    by_variant = readings(scrape(metrics_url_for(url, metrics_url)), experiment.name)
    control, treatment, unit, source = srm_counts(experiment, by_variant)
    check = srm(control, treatment, experiment.share)
    return {
        "running": True,
        "experiment": experiment.to_dict(),
        "variants": {v: {"bundle": experiment.bundle_of(v), **r.summary()} for v, r in by_variant.items()},
        "srm": None if check is None else {**asdict(check), "mismatch": check.mismatch, "alpha": SRM_ALPHA,
                                           "unit": unit, "source": source},
    }
