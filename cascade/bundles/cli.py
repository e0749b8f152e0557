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
    grace: Annotated[float, typer.Option("--grace", help="Seconds a superseded bundle stays loaded before a later rollout may unload it.")] = 30.0,
    public_key: Annotated[Optional[Path], typer.Option("--public-key", help="Verify manifest.sig with this ed25519 public key.")] = None,
    smoke_user: Annotated[Optional[list[int]], typer.Option("--smoke-user", help="User id for the smoke set (repeatable). Default: a few of the bundle's users + an unknown one.")] = None,
    lock_timeout: Annotated[float, typer.Option("--lock-timeout", help="Seconds to wait for a concurrent rollout.")] = 300.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Verify EXPORT, load it beside the live bundle, smoke it, switch `recommend` to it in one step."""
    from cascade.bundles.rollout import rollout as run

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
        console.print(f"rolled back to bundle [bold]{result.bundle_id}[/bold] in {result.seconds['total']:.3f} s "
                      f"(was {result.previous})")


def bundles(
    url: Annotated[str, typer.Option("--url", help=URL_HELP)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the state as JSON.")] = False,
) -> None:
    """Which bundles the server holds, which one is live, since when, and the previous one."""
    from cascade.bundles.state import connect, read_state

    with cli_errors():
        state = read_state(connect(url))
    if as_json:
        typer.echo(json.dumps(state.to_dict(), indent=2))
        return
    console.print(f"live: [bold]{state.live}[/bold] since {state.live_since}; previous: {state.previous}")
    for bundle, info in sorted(state.bundles.items()):
        role = "live" if bundle == state.live else "previous" if bundle == state.previous else "loaded"
        ready = sum(s == "READY" for s in info.models.values())
        console.print(f"  {bundle}  {role:8s} {ready}/{len(info.models)} models ready  {info.export_root}")
