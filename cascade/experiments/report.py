"""``cascade experiment report``: per-variant outcomes of an experiment.

**Exposure report** (method ``exposures``, when the router's exposure log holds rows of the
experiment; cascade/experiments/exposures.py). What is counted, exactly:

- an *exposure* is one answered ``recommend`` request of the experiment with a valid ``user_id``,
  its variant assigned by the user hash (requests that forced a variant with the ``variant`` input,
  QA traffic, are left out and counted in ``forced_exposures_excluded``), with request time in
  ``[since, until)``;
- an exposure is *followed* when the interaction log holds an event of the same user for one of
  the exposure's items with ``request second <= event timestamp < request second + window``;
- a *click* is an event of the interaction log (deduplicated by user, item, timestamp) that follows
  at least one exposure of that user in that variant in this sense, counted once.

Per variant: ``exposed_users`` (distinct users with an exposure), ``exposures``,
``follow_rate`` = followed exposures / exposures, ``clicks_per_exposed_user`` = clicks / exposed
users (users without a click count as 0). Intervals are 95 % normal intervals computed over USERS,
the randomisation unit (a user's exposures are not independent): the mean of per-user clicks with
its standard error, and for the rate the delta method on per-user (followed, exposures) sums. The
treatment - control difference has the interval sqrt(se_t^2 + se_c^2). A user whose variant
changed (a share change moves users control -> treatment) counts in each variant where exposed.
Exposures less than ``window`` before ``until`` (or now) have had less time to be followed.

**Engagement report** (method ``per_user_engagement``, the fallback without an exposure log):
events of the interaction log in ``[since, until)`` per user, each user put in a variant by
:func:`cascade.experiments.assign.assign` with the experiment's salt and share; per variant the
users with >= 1 event and events per such user (95 % normal interval), Welch's interval for the
difference. It does not know what was shown, and users who never interacted are invisible.
"""

from __future__ import annotations

import math
import time
from datetime import datetime
from typing import Any

import numpy as np

from cascade.errors import InvalidInputError
from cascade.experiments.assign import VARIANTS, assign_many
from cascade.experiments.state import check_share

Z95 = 1.959964
METHOD_EXPOSURES = "exposures"
METHOD_ENGAGEMENT = "per_user_engagement"
COUNTED = ("events of the interaction log in [since, until), per user; variant by the experiment's user hash; "
           "per variant: users with >= 1 event and events per such user (95 % CI); no exposure log, so not "
           "interactions with recommended items")
COUNTED_EXPOSURES = (
    "exposure = an answered request of the experiment (hash-assigned, forced-variant requests excluded) in "
    "[since, until); followed = the same user had an interaction-log event with one of its items within the window "
    "after the request; click = such an event, counted once; follow_rate = followed exposures / exposures; "
    "clicks_per_exposed_user = clicks / distinct exposed users; 95 % CIs over users (the randomisation unit)")


def _epoch(text: str | None, field: str) -> int | None:
    if text is None or text == "":
        return None
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())
    except ValueError:
        raise InvalidInputError(f"{field} must be an ISO-8601 time such as 2026-01-31T12:00:00+00:00, got {text!r}") from None


def _stats(values: list[float]) -> dict[str, Any]:
    n = len(values)
    mean = sum(values) / n if n else float("nan")
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else float("nan")
    half = Z95 * math.sqrt(var / n) if n > 1 else float("nan")
    return {"active_users": n, "interactions": int(sum(values)), "interactions_per_active_user": mean,
            "ci95": [mean - half, mean + half], "_var": var}


def outcome_report(log: str, *, url: str | None = None, salt: str | None = None, share: float | None = None,
                   since: str | None = None, until: str | None = None, exposures: str | None = None,
                   experiment_name: str | None = None, window_hours: float = 24.0) -> dict[str, Any]:
    """The exposure report when an exposure log with rows of the experiment exists (``exposures``,
    or the running experiment's router parameter), else the per-user engagement report; the
    result's ``method`` says which ran and ``exposure_log_status`` why."""
    if not (math.isfinite(window_hours) and window_hours > 0):
        raise InvalidInputError(f"--window-hours must be a positive number of hours, got {window_hours!r}")
    experiment = None
    if url is not None:
        from cascade.bundles.state import connect
        from cascade.experiments.state import running_experiment

        experiment = running_experiment(connect(url))
        if experiment is None and salt is None and exposures is None:
            raise InvalidInputError(f"no experiment is running on {url}: pass --exposures (and --experiment) or "
                                    "--salt and --share of the ended one")
    if experiment is not None:
        salt = salt or experiment.salt
        share = experiment.share if share is None else share
        since = since or experiment.started_at
        exposures = exposures or experiment.exposure_log or None
        experiment_name = experiment_name or experiment.name
    start, end = _epoch(since, "--since"), _epoch(until, "--until") or int(time.time()) + 1  # now: this second included
    status = "none configured (no --exposures, no running experiment with an exposure log)"
    if exposures:
        from cascade.experiments.exposures import read_exposures

        frame = read_exposures(exposures, start, end)
        names = sorted(set(frame["experiment"]))
        if experiment_name is None and len(names) > 1:
            raise InvalidInputError(f"the exposure log {exposures} holds experiments {names}: pass --experiment NAME")
        name = experiment_name or (names[0] if names else None)
        frame = frame[frame["experiment"] == name] if name is not None else frame
        if len(frame):
            return _exposure_report(log, exposures, frame, name, since, until, start, end, window_hours)
        status = f"no exposures of experiment {name!r} in {exposures} between --since and --until"
    result = _engagement_report(log, salt, share, since, until, start, end)
    result["exposure_log_status"] = status
    return result


def _engagement_report(log: str, salt: str | None, share: float | None, since: str | None, until: str | None,
                       start: int | None, end: int) -> dict[str, Any]:
    from cascade.events.log import read_log

    if salt is None or share is None:
        raise InvalidInputError("--salt and --share are required without --url (a running experiment) or an exposure log")
    share = check_share(share, "--share")
    frame = read_log(log, start, end)
    per_user = frame.groupby("user_id").size() if len(frame) else frame.assign(n=0).groupby("user_id").size()
    variants = assign_many(per_user.index.tolist(), salt, share)
    out: dict[str, Any] = {"method": METHOD_ENGAGEMENT, "counted": COUNTED, "salt": salt, "share": share,
                           "since": since, "until": until, "events": int(len(frame)), "variants": {}}
    for variant in VARIANTS:
        values = [float(v) for v, name in zip(per_user.tolist(), variants) if name == variant]
        out["variants"][variant] = _stats(values)
    c, t = out["variants"]["control"], out["variants"]["treatment"]
    if c["active_users"] > 1 and t["active_users"] > 1:
        diff = t["interactions_per_active_user"] - c["interactions_per_active_user"]
        half = Z95 * math.sqrt(c["_var"] / c["active_users"] + t["_var"] / t["active_users"])
        out["difference"] = {"treatment_minus_control": diff, "ci95": [diff - half, diff + half],
                             "relative": diff / c["interactions_per_active_user"] if c["interactions_per_active_user"] else None}
    else:
        out["difference"] = None
    for stats in out["variants"].values():
        stats.pop("_var")
    total = c["active_users"] + t["active_users"]
    out["active_user_share_treatment"] = t["active_users"] / total if total else None
    return out


def per_user_outcomes(exposures: Any, events: Any, window_s: int) -> Any:
    """Per (variant, user): ``n`` exposures, ``c`` followed exposures, ``k`` clicks (see the module
    docstring). ``exposures``: rows of the exposure log; ``events``: rows of the interaction log."""
    import pandas as pd

    ex = exposures.reset_index(drop=True).assign(eid=lambda f: np.arange(len(f)))
    flat = ex[["eid", "user_id", "variant", "request_ms", "item_ids"]].explode("item_ids").dropna(subset=["item_ids"])
    flat = flat.rename(columns={"item_ids": "item_id"}).astype({"item_id": np.int64})
    matched = flat.merge(events[["user_id", "item_id", "timestamp"]], on=["user_id", "item_id"])
    first = matched["request_ms"] // 1000
    matched = matched[(matched["timestamp"] >= first) & (matched["timestamp"] < first + window_s)]
    keys = ["variant", "user_id"]
    table = ex.groupby(keys).size().rename("n").to_frame()
    table["c"] = ex.assign(f=ex["eid"].isin(set(matched["eid"]))).groupby(keys)["f"].sum()
    clicks = matched.drop_duplicates(["variant", "user_id", "item_id", "timestamp"]).groupby(keys).size()
    table["k"] = clicks.reindex(table.index, fill_value=0) if len(clicks) else 0
    return table.astype({"n": np.int64, "c": np.int64, "k": np.int64}) if len(table) else pd.DataFrame(columns=["n", "c", "k"])


def _variant_stats(table: Any) -> dict[str, Any]:
    n, c, k = (table[col].to_numpy(dtype=float) for col in ("n", "c", "k"))
    users = len(n)
    out: dict[str, Any] = {"exposed_users": users, "exposures": int(n.sum()), "exposures_followed": int(c.sum()),
                           "clicks": int(k.sum())}
    rate = c.sum() / n.sum() if n.sum() else float("nan")
    clicks = k.mean() if users else float("nan")
    if users > 1:
        se_rate = math.sqrt(np.sum((c - rate * n) ** 2) / (users - 1) / users) / n.mean()
        se_clicks = float(np.std(k, ddof=1)) / math.sqrt(users)
    else:
        se_rate = se_clicks = float("nan")
    out.update({"follow_rate": rate, "follow_rate_ci95": [rate - Z95 * se_rate, rate + Z95 * se_rate],
                "clicks_per_exposed_user": clicks,
                "clicks_per_exposed_user_ci95": [clicks - Z95 * se_clicks, clicks + Z95 * se_clicks],
                "_se": {"follow_rate": se_rate, "clicks_per_exposed_user": se_clicks}})
    return out


def _exposure_report(log: str, exposure_url: str, frame: Any, name: str | None, since: str | None, until: str | None,
                     start: int | None, end: int, window_hours: float) -> dict[str, Any]:
    from cascade.events.log import read_log

    window_s = int(round(window_hours * 3600))
    forced = int(frame["forced"].sum())
    hashed = frame[~frame["forced"]]
    events = read_log(log, start, end + window_s)
    table = per_user_outcomes(hashed, events, window_s)
    out: dict[str, Any] = {
        "method": METHOD_EXPOSURES, "counted": COUNTED_EXPOSURES, "experiment": name, "exposure_log": exposure_url,
        "log": log, "since": since, "until": until, "window_hours": window_hours,
        "forced_exposures_excluded": forced, "events_read": int(len(events)), "variants": {}, "difference": {}}
    for variant in VARIANTS:
        part = table.loc[variant] if len(table) and variant in table.index.get_level_values(0) else table.iloc[0:0]
        out["variants"][variant] = _variant_stats(part)
        out["variants"][variant]["bundle"] = next(iter(hashed.loc[hashed["variant"] == variant, "bundle"]), None)
    c, t = out["variants"]["control"], out["variants"]["treatment"]
    for metric in ("follow_rate", "clicks_per_exposed_user"):
        se = math.sqrt(c["_se"][metric] ** 2 + t["_se"][metric] ** 2)
        if c["exposed_users"] > 1 and t["exposed_users"] > 1 and math.isfinite(se):
            diff = t[metric] - c[metric]
            out["difference"][metric] = {"treatment_minus_control": diff, "ci95": [diff - Z95 * se, diff + Z95 * se],
                                         "relative": diff / c[metric] if c[metric] else None}
        else:
            out["difference"][metric] = None
    for stats in out["variants"].values():
        stats.pop("_se")
    return out
