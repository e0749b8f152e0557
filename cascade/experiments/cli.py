"""``cascade experiment start | share | status | stop | report`` (docs/DESIGN.md "Experiments")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from cascade.console import cli_errors, console

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)
URL_HELP = "Triton gRPC address HOST:GRPC_PORT (e.g. 127.0.0.1:8001)."
METRICS_HELP = "The server's Prometheus endpoint (default http://HOST:8002/metrics)."
REPOSITORY_HELP = "The server's --model-repository, when the server does not name it."


@app.command("start")
def start(
    url: Annotated[str, typer.Option("--url", help=URL_HELP)],
    treatment: Annotated[Path, typer.Option("--treatment", help="Export (bundle) folder of the treatment.")],
    share: Annotated[float, typer.Option("--share", help="Fraction of users (0..1) routed to the treatment.")] = 0.1,
    salt: Annotated[Optional[str], typer.Option("--salt", help="Salt of the user hash (default: random). Same salt = same split.")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Experiment name (metric label). Default exp-<bundle>.")] = None,
    repository: Annotated[Optional[Path], typer.Option("--repository", help=REPOSITORY_HELP)] = None,
    public_key: Annotated[Optional[Path], typer.Option("--public-key", help="Verify the treatment's manifest.sig.")] = None,
    instances: Annotated[Optional[int], typer.Option("--router-instances", help=(
        "Router instances = requests in flight through the router (default $CASCADE_ROUTER_INSTANCES, else 16; "
        "each costs ~55 MB)."))] = None,
    exposure_log: Annotated[Optional[str], typer.Option("--exposure-log", help=(
        "Where the router records what it answered (folder or s3:// URL; 'off' disables). Default: "
        "$CASCADE_EXPOSURE_LOG, else the folder exposure_log beside the bundle repository."))] = None,
    exposure_flush: Annotated[float, typer.Option("--exposure-flush-seconds", help="How often the router writes queued exposures.")] = 5.0,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Load the treatment beside the live bundle (control) and split users between them by a salted hash."""
    from cascade.experiments.control import start as run

    with cli_errors():
        result = run(treatment, url, share=share, name=name, salt=salt, repository=repository,
                     public_key=public_key, instances=instances, exposure_log=exposure_log,
                     exposure_flush_seconds=exposure_flush)
    if as_json:
        typer.echo(json.dumps(result.__dict__, default=str))
        return
    e = result.experiment
    console.print(f"experiment [bold]{e['name']}[/bold] running: {e['share']:.1%} of users -> {e['treatment']}, "
                  f"the rest -> {e['control']} (salt {e['salt']}; {result.seconds.get('total', 0):.1f} s)")


@app.command("share")
def share(
    url: Annotated[str, typer.Option("--url", help=URL_HELP)],
    value: Annotated[float, typer.Argument(help="New treatment share (0..1).")],
    repository: Annotated[Optional[Path], typer.Option("--repository", help=REPOSITORY_HELP)] = None,
) -> None:
    """Change the treatment share in one atomic router load (users stay sticky; a higher share only adds users)."""
    from cascade.experiments.control import set_share

    with cli_errors():
        result = set_share(url, value, repository=repository)
    console.print(f"experiment {result.experiment['name']}: share {value:.1%} ({result.seconds['router_load']:.2f} s)")


@app.command("status")
def status(
    url: Annotated[str, typer.Option("--url", help=URL_HELP)],
    metrics_url: Annotated[Optional[str], typer.Option("--metrics-url", help=METRICS_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Shares, per-variant counts, errors, degraded/short answers, p50/p99 and the SRM check (distinct users from the exposure log since the last share change; requests from the metrics without one)."""
    from cascade.experiments.status import experiment_status

    with cli_errors():
        report = experiment_status(url, metrics_url)
    if as_json:
        typer.echo(json.dumps(report, indent=2, default=str))
        return
    if not report["running"]:
        console.print(f"no experiment is running on {url}")
        return
    e = report["experiment"]
    console.print(f"experiment [bold]{e['name']}[/bold] since {e['started_at']}: share {e['share']:.1%} "
                  f"(salt {e['salt']})")
    for variant, r in report["variants"].items():
        rate = "n/a" if r["error_rate"] is None else f"{r['error_rate']:.2%}"
        degraded = "n/a" if r["degraded_rate"] is None else f"{r['degraded_rate']:.2%}"
        console.print(f"  {variant:9s} {r['bundle']}: {r['requests']:.0f} requests, {r['assignments']:.0f} by hash, "
                      f"errors {rate}, degraded {degraded}, short {r['short']:.0f}, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms")
    check = report["srm"]
    if check is None:
        console.print("  SRM: no hash assignments yet")
    else:
        flag = "[red]SAMPLE RATIO MISMATCH[/red]" if check["mismatch"] else "ok"
        console.print(f"  SRM: treatment {check['observed_share']:.2%} of {check['n']} {check['unit']} vs "
                      f"{check['expected_share']:.2%} expected, chi2 {check['chi2']:.2f}, p = {check['p_value']:.3g} ({flag}); "
                      f"counted from the {check['source']}")


@app.command("stop")
def stop(
    url: Annotated[str, typer.Option("--url", help=URL_HELP)],
    promote: Annotated[bool, typer.Option("--promote/--abort", help="--promote: the treatment becomes live; --abort (default): everyone back on the control, treatment unloaded.")] = False,
    repository: Annotated[Optional[Path], typer.Option("--repository", help=REPOSITORY_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """End the running experiment."""
    from cascade.experiments.control import stop as run

    with cli_errors():
        result = run(url, promote=promote, repository=repository)
    if as_json:
        typer.echo(json.dumps(result.__dict__, default=str))
        return
    e = result.experiment
    live = e["treatment"] if promote else e["control"]
    console.print(f"experiment [bold]{e['name']}[/bold] {result.action}: bundle {live} serves everyone "
                  f"({result.seconds['to_switched']:.2f} s)")


@app.command("report")
def report(
    log: Annotated[str, typer.Option("--log", help="Interaction log (folder or URL) written by the interactions model.")],
    url: Annotated[Optional[str], typer.Option("--url", help="Read name/salt/share/start/exposure log of the running experiment from this server.")] = None,
    exposures: Annotated[Optional[str], typer.Option("--exposures", help="Exposure log (folder or URL) the router wrote (default: the running experiment's).")] = None,
    experiment: Annotated[Optional[str], typer.Option("--experiment", help="Experiment name in the exposure log (default: the running one, or the only one).")] = None,
    window_hours: Annotated[float, typer.Option("--window-hours", help="An exposure counts as followed by an event up to this many hours after the request.")] = 24.0,
    salt: Annotated[Optional[str], typer.Option("--salt", help="Salt (fallback report, when the experiment is no longer running).")] = None,
    share: Annotated[Optional[float], typer.Option("--share", help="Treatment share (fallback report, when not running).")] = None,
    since: Annotated[Optional[str], typer.Option("--since", help="Window start, ISO-8601 UTC (default: the experiment's start).")] = None,
    until: Annotated[Optional[str], typer.Option("--until", help="Window end, ISO-8601 UTC (default: now).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Write the report as JSON here.")] = None,
) -> None:
    """Per-variant outcomes with 95 % intervals computed over USERS (the randomisation unit).

    With an exposure log (method "exposures"): an exposure is one answered request of the experiment
    whose variant came from the user hash (requests forcing a variant are excluded), made in
    [since, until). It is followed when the interaction log holds an event of that user for one of
    its items from the request's second to --window-hours later; such an event is a click, counted
    once. Per variant: exposed users, exposures, follow_rate (followed / exposures), clicks per
    exposed user (users without clicks count as 0), and treatment - control with its interval.

    Without one (method "per_user_engagement", the fallback): events in [since, until) per user,
    users put in variants by the same hash; users with >= 1 event and events per such user. The
    output's "method" says which ran.
    """
    from cascade.experiments.report import outcome_report

    with cli_errors():
        result = outcome_report(log, url=url, salt=salt, share=share, since=since, until=until, exposures=exposures,
                                experiment_name=experiment, window_hours=window_hours)
    text = json.dumps(result, indent=2, default=str)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    typer.echo(text)
