"""``cascade rollout EXPORT --canary 5,25,50,100``: an experiment whose share rises step by step
while the guardrails hold (judged on each step's own readings from the server's metrics), then
promoted; the first broken guardrail aborts it with an automatic rollback (``recommend`` back on
the control's ensemble in one load, the treatment unloaded). Every step is in the report."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cascade.errors import CascadeError, InvalidInputError
from cascade.experiments import control
from cascade.experiments.guards import GuardSpec
from cascade.experiments.readings import VariantReading, metrics_url_for, readings, scrape

LOG = logging.getLogger(__name__)
FLUSH_WAIT_S = 0.5  # the router sends its counters every 0.2 s
MAX_EXTENSIONS = 2  # a step without min_requests treatment answers is held this many more times


def parse_steps(text: str) -> list[float]:
    """"5,25,50,100" -> [0.05, 0.25, 0.5, 1.0]: percentages, strictly increasing, in (0, 100]."""
    try:
        values = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise InvalidInputError(f"--canary {text!r}: expected comma-separated percentages, e.g. 5,25,50,100") from None
    if not values or any(not 0 < v <= 100 for v in values) or any(b <= a for a, b in zip(values, values[1:])):
        raise InvalidInputError(f"--canary {text!r}: expected strictly increasing percentages in (0, 100], e.g. 5,25,50,100")
    return [v / 100.0 for v in values]


@dataclass
class CanaryReport:
    bundle_id: str | None
    control: str | None
    outcome: str  # promoted | aborted
    reason: str
    guard: dict[str, Any]
    steps: list[dict[str, Any]] = field(default_factory=list)
    experiment: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_canary(export_root: Path, url: str, *, steps: list[float], step_seconds: float, guard: GuardSpec,
               metrics_url: str | None = None, report_path: Path | None = None, repository: Path | None = None,
               public_key: Path | None = None, name: str | None = None, salt: str | None = None,
               lock_dir: Path | None = None) -> CanaryReport:
    if not step_seconds > 0:
        raise InvalidInputError(f"--step-seconds must be > 0, got {step_seconds}")
    metrics = metrics_url_for(url, metrics_url)
    scrape(metrics)  # fail before loading anything when the metrics endpoint is wrong
    started = time.monotonic()
    begun = control.start(export_root, url, share=steps[0], name=name, salt=salt, public_key=public_key,
                          repository=repository, lock_dir=lock_dir)
    experiment = begun.experiment
    report = CanaryReport(experiment["treatment"], experiment["control"], "aborted", "", asdict(guard),
                          experiment=experiment, seconds={"start": begun.seconds.get("total", 0.0)})
    baseline = VariantReading()  # the control's readings over all steps (its reference at 100 %)
    try:
        for index, share in enumerate(steps):
            if index:
                control.set_share(url, share, repository=repository, lock_dir=lock_dir)
            step = _run_step(metrics, experiment["name"], share, step_seconds, guard, baseline)
            baseline = baseline.plus(step.pop("_control"))
            report.steps.append(step)
            LOG.info("canary step %.0f%%: %s", share * 100, "ok" if step["ok"] else step["reason"])
            if not step["ok"]:
                report.reason = f"step {share:.0%}: {step['reason']}"
                break
        else:
            report.outcome, report.reason = "promoted", "every guardrail held at every step"
    except CascadeError as error:
        report.reason = f"canary failed: {error.message}"
    mark = time.monotonic()
    if report.outcome == "promoted":
        control.stop(url, promote=True, repository=repository, lock_dir=lock_dir)
    else:
        stopped = control.stop(url, promote=False, repository=repository, lock_dir=lock_dir)  # the automatic rollback
        report.seconds["rollback_to_switched"] = stopped.seconds["to_switched"]
    report.seconds["stop"] = time.monotonic() - mark
    report.seconds["total"] = time.monotonic() - started
    if report_path is not None:
        report_path.parent.mkdir(parents=True, exist_ok=True)
        report_path.write_text(json.dumps(report.to_dict(), indent=2, default=str))
    return report


def _run_step(metrics: str, experiment: str, share: float, step_seconds: float, guard: GuardSpec,
              baseline: VariantReading) -> dict[str, Any]:
    time.sleep(FLUSH_WAIT_S)  # the previous router's last counts land before the step's first scrape
    before = readings(scrape(metrics), experiment)
    mark = time.monotonic()
    for extension in range(MAX_EXTENSIONS + 1):
        time.sleep(step_seconds)
        time.sleep(FLUSH_WAIT_S)
        after = readings(scrape(metrics), experiment)
        window = {v: after[v].minus(before[v]) for v in after}
        if window["treatment"].requests >= guard.min_requests:
            break
    step: dict[str, Any] = {"share": share, "seconds": round(time.monotonic() - mark, 3), "extensions": extension,
                            "control": window["control"].summary(), "treatment": window["treatment"].summary()}
    reference = window["control"]
    if reference.requests < guard.min_requests:  # at 100 % the control only has the earlier steps
        reference = baseline.plus(reference)
        step["control_reference"] = "all steps so far"
    step["_control"] = window["control"]
    if window["treatment"].requests < guard.min_requests:
        step.update(ok=False, guards={}, reason=(f"only {window['treatment'].requests:.0f} treatment requests "
                                                 f"(min_requests={guard.min_requests}): cannot judge the step"))
        return step
    ok, results = guard.judge(reference, window["treatment"])
    broken = [f"{k} = {_fmt(r['value'])} > {r['limit']}" for k, r in results.items() if not r["ok"]]
    step.update(ok=ok, guards=results, reason="; ".join(broken) if broken else "guardrails hold")
    return step


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"
