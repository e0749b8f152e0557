"""``cascade keys generate`` and ``cascade sign EXPORT --key`` (``cascade verify`` checks: cascade/bundles/cli.py)."""

from __future__ import annotations

from pathlib import Path

import typer

from cascade.console import cli_errors

keys_app = typer.Typer(no_args_is_help=True)


@keys_app.command("generate")
def generate(
    out: Path = typer.Option(..., "--out", help="Folder for <name>.key (PKCS#8 PEM, mode 0600) and <name>.pub."),
    name: str = typer.Option("bundle-signing", "--name", help="File name stem of the key pair."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing key pair."),
) -> None:
    """Create an Ed25519 key pair for signing exports (keep the .key in a secret store)."""
    from cascade.bundles.signing import generate_keys

    with cli_errors():
        pair = generate_keys(out, name, overwrite)
    typer.echo(f"private key {pair.private_key} (keep secret)\npublic key  {pair.public_key}")


def sign(
    export_dir: Path = typer.Argument(..., help="Export folder holding manifest.json."),
    key: Path = typer.Option(..., "--key", help="Ed25519 private key (PEM or base64 raw seed)."),
    write_manifest: bool = typer.Option(
        False, "--write-manifest",
        help="Write manifest.json first (bundle_id = export.json's version) when the export has none."),
) -> None:
    """Sign EXPORT/manifest.json with an Ed25519 key; writes EXPORT/manifest.sig."""
    from cascade.bundles.manifest import MANIFEST_FILE, write_manifest as write
    from cascade.bundles.signing import sign_manifest
    from cascade.online.export_layout import ExportLayout

    with cli_errors():
        if write_manifest and not (export_dir / MANIFEST_FILE).is_file():
            info = ExportLayout(export_dir).manifest()
            write(export_dir, info.version, info.code_version)
        path = sign_manifest(export_dir, key)
    typer.echo(f"signed {export_dir / MANIFEST_FILE} -> {path}")

