"""``cascade rollout | rollback | bundles``: bundles in a running tritonserver (docs/DESIGN.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from cascade.console import cli_errors, console

URL_HELP = "Triton gRPC address HOST:GRPC_PORT (e.g. 127.0.0.1:8001)."
REPOSITORY_HELP = "The server's --model-repository, when the server does not name it (not started by `cascade serve`)."


def rollout(
    export: Annotated[Path, typer.Argument(help="Export (bundle) folder written by `cascade export`.")],
    url: Annotated[str, typer.Option("--url", help=URL_HELP)],
    repository: Annotated[Optional[Path], typer.Option("--repository", help=REPOSITORY_HELP)] = None,
    grace: Annotated[float, typer.Option("--grace", help="Seconds after it stopped being live that a superseded bundle may still be draining: a later rollout unloads it once its ensemble is quiet for 1 s, at the latest after this.")] = 30.0,
    public_key: Annotated[Optional[Path], typer.Option("--public-key", help="Verify manifest.sig with this ed25519 public key.")] = None,
    smoke_user: Annotated[Optional[list[int]], typer.Option("--smoke-user", help="User id for the smoke set (repeatable). Default: a few of the bundle's users + an unknown one.")] = None,
    lock_timeout: Annotated[float, typer.Option("--lock-timeout", help="Seconds to wait for a concurrent rollout.")] = 300.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    canary: Annotated[Optional[str], typer.Option("--canary", help="Canary: treatment shares in percent, e.g. 5,25,50,100 (an experiment promoted step by step while --guard holds).")] = None,
    step_seconds: Annotated[float, typer.Option("--step-seconds", help="Canary: seconds per step.")] = 60.0,
    guard: Annotated[Optional[str], typer.Option("--guard", help="Canary guardrails, e.g. error_rate<=0.01,p99_ratio<=1.5,degraded_rate<=0.05,min_requests=20 (README \"Experiments\").")] = None,
    metrics_url: Annotated[Optional[str], typer.Option("--metrics-url", help="Canary: the server's Prometheus endpoint (default http://HOST:8002/metrics).")] = None,
    report: Annotated[Optional[Path], typer.Option("--report", help="Canary: write the step report (JSON) here.")] = None,
) -> None:
    """Verify EXPORT, load it beside the live bundle, smoke it, switch `recommend` to it in one step
    (with --canary: raise its share step by step while the guardrails hold, else roll back)."""
    from cascade.bundles.rollout import rollout as run

    if canary is not None or guard is not None:
        _canary(export, url, canary or "5,25,50,100", step_seconds, guard, metrics_url, report, repository, public_key)
        return
    with cli_errors():
        result = run(export, url, repository=repository, grace_s=grace, public_key=public_key,
                     smoke_users=list(smoke_user) if smoke_user else None, lock_timeout_s=lock_timeout)
    if as_json:
        typer.echo(json.dumps(result.__dict__, default=str))
    elif result.already_live:
        console.print(f"bundle [bold]{result.bundle_id}[/bold] is already live on {url}")
    else:
        timings = ", ".join(f"{k} {v:.2f} s" for k, v in result.seconds.items())
        console.print(f"bundle [bold]{result.bundle_id}[/bold] is live on {url} (previous: {result.previous}; "
                      f"{'reused loaded models' if result.reused else 'loaded'}; {timings})")


def _canary(export: Path, url: str, steps: str, step_seconds: float, guard: Optional[str], metrics_url: Optional[str],
            report: Optional[Path], repository: Optional[Path], public_key: Optional[Path]) -> None:
    from cascade.experiments.canary import parse_steps, run_canary
    from cascade.experiments.guards import DEFAULT_SPEC, GuardSpec

    with cli_errors():
        result = run_canary(export, url, steps=parse_steps(steps), step_seconds=step_seconds,
                            guard=GuardSpec.parse(guard or DEFAULT_SPEC), metrics_url=metrics_url,
                            report_path=report, repository=repository, public_key=public_key)
    typer.echo(json.dumps(result.to_dict(), indent=2, default=str))
    for step in result.steps:
        console.print(f"step {step['share']:.0%}: {'ok' if step['ok'] else 'BROKEN'} - {step['reason']} "
                      f"(treatment {step['treatment']['requests']:.0f} requests, control {step['control']['requests']:.0f})")
    if result.outcome != "promoted":
        console.print(f"[red]canary aborted and rolled back: {result.reason}; bundle {result.control} serves everyone[/red]")
        raise typer.Exit(1)
    console.print(f"canary promoted: bundle [bold]{result.bundle_id}[/bold] is live (previous {result.control})")


def rollback(
    url: Annotated[str, typer.Option("--url", help=URL_HELP)],
    repository: Annotated[Optional[Path], typer.Option("--repository", help=REPOSITORY_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Switch `recommend` back to the previous bundle (still loaded) in one step."""
    from cascade.bundles.rollout import rollback as run

    with cli_errors():
        result = run(url, repository=repository)
    if as_json:
        typer.echo(json.dumps(result.__dict__, default=str))
    else:
        console.print(f"rolled back to bundle [bold]{result.bundle_id}[/bold]: traffic switched "
                      f"{result.seconds['to_switched']:.3f} s after the command started (was {result.previous})")


def bundles(
    url: Annotated[str, typer.Option("--url", help=URL_HELP)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the state as JSON.")] = False,
    live: Annotated[bool, typer.Option("--live", help="Print only the live bundle id (empty line: none).")] = False,
    held: Annotated[bool, typer.Option("--held", help="Print only the loaded bundle ids, space-separated.")] = False,
) -> None:
    """Which bundles the server holds, which one is live, since when, and the previous one."""
    from cascade.bundles.state import connect, read_state

    with cli_errors():
        state = read_state(connect(url))
    if live or held:
        typer.echo(state.live or "" if live else " ".join(sorted(state.bundles)))
        return
    if as_json:
        typer.echo(json.dumps(state.to_dict(), indent=2))
        return
    console.print(f"live: [bold]{state.live}[/bold] since {state.live_since}; previous: {state.previous}")
    for bundle, info in sorted(state.bundles.items()):
        role = "live" if bundle == state.live else "previous" if bundle == state.previous else "loaded"
        ready = sum(s == "READY" for s in info.models.values())
        console.print(f"  {bundle}  {role:8s} {ready}/{len(info.models)} models ready  {info.export_root}")


def release(
    data: Annotated[Optional[Path], typer.Option("--data", help="Dataset folder: export it (and evaluate on its test split).")] = None,
    export: Annotated[Optional[Path], typer.Option("--export", help="An existing export to release instead (needs --data for the gate).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Export folder for --data (default build/release/export).")] = None,
    champion: Annotated[Optional[str], typer.Option("--champion", help="Publish location of the champion (file:///DIR or s3://BUCKET/PREFIX); its LATEST bundle's evaluation.json is the bar.")] = None,
    publish: Annotated[Optional[str], typer.Option("--publish", help="Where to publish when the gate passes (file:///DIR or s3://BUCKET/PREFIX); LATEST written last.")] = None,
    ndcg_tolerance: Annotated[float, typer.Option("--ndcg-tolerance", help="Allowed relative drop of NDCG@10 vs the champion.")] = 0.02,
    recall_tolerance: Annotated[float, typer.Option("--recall-tolerance", help="Allowed relative drop of recall@100 vs the champion.")] = 0.02,
    max_users: Annotated[Optional[int], typer.Option("--max-users", help="Evaluate a seeded sample of this many test users.")] = None,
    server_check: Annotated[bool, typer.Option("--server-check/--no-server-check", help="Start a tritonserver on the export and run the contract suite.")] = True,
    report: Annotated[Optional[Path], typer.Option("--report", help="Write the release report (JSON) here.")] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="Refuse an export made for another device: gpu for the eks-gpu overlay, cpu for eks-cpu.")] = None,
    dataset_url: Annotated[Optional[str], typer.Option("--dataset-url", help="Also publish --data to URL/<bundle id>/ (before LATEST moves), for `cascade retrain`.")] = None,
    sign_key: Annotated[Optional[Path], typer.Option("--sign-key", envvar="CASCADE_BUNDLE_SIGNING_KEY", help="Ed25519 private key: sign the export (manifest.sig) before it is verified and published; with CASCADE_BUNDLE_PUBLIC_KEY set, the signature is checked against the cluster's public key first.")] = None,
) -> None:
    """Export -> validate (configs, manifest, a real tritonserver) -> quality gate vs the champion -> publish."""
    from cascade.bundles.release import release as run

    with cli_errors():
        result = run(data=data, export=export, out=out, champion=champion, publish_url=publish,
                     tolerances={"ndcg@10": ndcg_tolerance, "recall@100": recall_tolerance},
                     max_users=max_users, server_check=server_check, device=device, dataset_url=dataset_url,
                     sign_key=sign_key)
    text = json.dumps(result.to_dict(), indent=2, default=str)
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(text)
    typer.echo(text)
    for metric, delta in result.gate.deltas.items():
        console.print(f"{metric}: {delta['candidate']:.4f} vs champion {delta['champion']:.4f} ({delta['rel']:+.1%})")
    if not result.gate.passed:
        console.print(f"[red]{result.gate.reason}; nothing published[/red]")
        raise typer.Exit(1)
    console.print(f"bundle [bold]{result.bundle_id}[/bold]: {result.gate.reason}; "
                  + (f"published to {result.published}" if result.published else "not published (no --publish)"))


def verify(
    export: Annotated[Path, typer.Argument(help="Export (bundle) folder.")],
    public_key: Annotated[Optional[Path], typer.Option("--public-key", help="Also verify manifest.sig with this ed25519 public key.")] = None,
) -> None:
    """Check a bundle before it is used: manifest sha256 of every file, code version, signature."""
    from cascade.bundles.manifest import verify_bundle

    with cli_errors():
        manifest = verify_bundle(export, public_key=public_key)
    console.print(f"bundle [bold]{manifest.bundle_id}[/bold]: {len(manifest.files)} files verified "
                  f"(cascade {manifest.code_version})")
