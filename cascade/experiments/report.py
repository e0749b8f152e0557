"""``cascade experiment report``: per-variant engagement from the interaction log (issue 15).

What is counted, exactly: events of the interaction log with ``since <= timestamp < until``
(deduplicated by user, item, timestamp, as ``read_log`` does); each user is put in a variant by
:func:`cascade.experiments.assign.assign` with the experiment's salt and share; per variant:
``active_users`` (users with at least one event in the window), ``interactions``, and
``interactions_per_active_user`` with a 95 % normal-approximation interval (mean +- 1.96 sd/sqrt(n));
the treatment - control difference has Welch's interval. No exposure log exists (the router does
not record the items it showed), so this is per-user engagement by variant, NOT "interactions with
recommended items"; users who never interacted are invisible here (their count per variant is
unknown), so compare the active-user counts against the share as a sanity check.
"""

from __future__ import annotations

import math
import time
from datetime import datetime
from typing import Any

from cascade.errors import InvalidInputError
from cascade.experiments.assign import VARIANTS, assign_many
from cascade.experiments.state import check_share

Z95 = 1.959964
COUNTED = ("events of the interaction log in [since, until), per user; variant by the experiment's user hash; "
           "per variant: users with >= 1 event and events per such user (95 % CI); no exposure log, so not "
           "interactions with recommended items")


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
                   since: str | None = None, until: str | None = None) -> dict[str, Any]:
    from cascade.events.log import read_log

    experiment = None
    if url is not None:
        from cascade.bundles.state import connect
        from cascade.experiments.state import running_experiment

        experiment = running_experiment(connect(url))
        if experiment is None and salt is None:
            raise InvalidInputError(f"no experiment is running on {url}: pass --salt and --share of the ended one")
    if experiment is not None:
        salt = salt or experiment.salt
        share = experiment.share if share is None else share
        since = since or experiment.started_at
    if salt is None or share is None:
        raise InvalidInputError("--salt and --share are required without --url (a running experiment)")
    share = check_share(share, "--share")
    start, end = _epoch(since, "--since"), _epoch(until, "--until") or int(time.time())
    frame = read_log(log, start, end)
    per_user = frame.groupby("user_id").size() if len(frame) else frame.assign(n=0).groupby("user_id").size()
    variants = assign_many(per_user.index.tolist(), salt, share)
    out: dict[str, Any] = {"counted": COUNTED, "salt": salt, "share": share, "since": since, "until": until,
                           "events": int(len(frame)), "variants": {}}
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
