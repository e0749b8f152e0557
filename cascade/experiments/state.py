"""The experiment's state: parameters of the router model ``recommend`` (nothing else is stored),
so a restarted server, the CLI and the canary all read it back from the server itself."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

from cascade.errors import InvalidInputError

# router parameters (besides the bundle state bundle_id / previous_bundle / live_since)
EXPERIMENT = "experiment"
SALT = "salt"
SHARE = "share"
CONTROL_BUNDLE = "control_bundle"
TREATMENT_BUNDLE = "treatment_bundle"
STARTED_AT = "started_at"
SHARE_SINCE = "share_since"  # when the current share took effect (the SRM window)
EXPOSURE_LOG = "exposure_log"  # folder or URL of the exposure log ("" = none)
EXPOSURE_FLUSH_SECONDS = "exposure_flush_seconds"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_share(share: float, field: str = "share") -> float:
    share = float(share)
    if not (math.isfinite(share) and 0.0 <= share <= 1.0):
        raise InvalidInputError(f"{field} must be a fraction of users between 0 and 1 (e.g. 0.1), got {share!r}")
    return share


def check_name(value: str, field: str) -> str:
    if not NAME_PATTERN.match(value or ""):
        raise InvalidInputError(
            f"{field} must be 1-64 characters of letters, digits, '.', '_' or '-' (starting with a letter or digit), got {value!r}")
    return value


@dataclass(frozen=True)
class Experiment:
    name: str
    salt: str
    share: float  # fraction of users (by bucket) routed to the treatment
    control: str  # bundle ids
    treatment: str
    started_at: str  # ISO-8601 UTC
    share_since: str = ""  # ISO-8601 UTC; "" = started_at
    exposure_log: str = ""  # cascade/experiments/exposures.py; "" = no exposure log
    exposure_flush_seconds: float = 5.0

    def __post_init__(self) -> None:
        check_name(self.name, "experiment name")
        check_name(self.salt, "salt")
        check_share(self.share)
        if not self.share_since:
            object.__setattr__(self, "share_since", self.started_at)
        if not (math.isfinite(self.exposure_flush_seconds) and 0.05 <= self.exposure_flush_seconds <= 3600):
            raise InvalidInputError(f"exposure flush seconds must be 0.05..3600, got {self.exposure_flush_seconds!r}")
        if self.control == self.treatment:
            raise InvalidInputError(f"treatment bundle {self.treatment!r} is the control (live) bundle; nothing to compare")

    def bundle_of(self, variant: str) -> str:
        return self.treatment if variant == "treatment" else self.control

    def parameters(self) -> dict[str, str]:
        return {EXPERIMENT: self.name, SALT: self.salt, SHARE: repr(self.share), CONTROL_BUNDLE: self.control,
                TREATMENT_BUNDLE: self.treatment, STARTED_AT: self.started_at,
                SHARE_SINCE: self.share_since, EXPOSURE_LOG: self.exposure_log,
                EXPOSURE_FLUSH_SECONDS: repr(self.exposure_flush_seconds)}

    @classmethod
    def from_parameters(cls, params: dict[str, str]) -> "Experiment | None":
        """The experiment in a ``recommend`` config's parameters; None for the plain ensemble."""
        if not params.get(EXPERIMENT):
            return None
        started = params.get(STARTED_AT, "")
        return cls(params[EXPERIMENT], params[SALT], float(params[SHARE]), params[CONTROL_BUNDLE],
                   params[TREATMENT_BUNDLE], started, params.get(SHARE_SINCE) or started,
                   params.get(EXPOSURE_LOG, ""), float(params.get(EXPOSURE_FLUSH_SECONDS) or 5.0))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def running_experiment(client: Any) -> Experiment | None:
    """The experiment the server at ``client`` runs (router parameters), or None."""
    from cascade.bundles.state import admin_headers, parameters
    from cascade.bundles.tagging import ENSEMBLE

    index = client.get_model_repository_index(headers=admin_headers(), as_json=True).get("models", [])
    if not any(m["name"] == ENSEMBLE and m.get("state") == "READY" for m in index):
        return None
    config = client.get_model_config(ENSEMBLE, headers=admin_headers(), as_json=True)["config"]
    return Experiment.from_parameters(parameters(config))
