"""``cascade keys generate``, ``cascade sign EXPORT --key``, ``cascade verify EXPORT --public-key``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

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
    from cascade.bundles.manifest import MANIFEST_NAME, write_manifest as write
    from cascade.bundles.signing import sign_manifest
    from cascade.online.export_layout import ExportLayout

    with cli_errors():
        if write_manifest and not (export_dir / MANIFEST_NAME).is_file():
            info = ExportLayout(export_dir).manifest()
            write(export_dir, info.version, info.code_version)
        path = sign_manifest(export_dir, key)
    typer.echo(f"signed {export_dir / MANIFEST_NAME} -> {path}")


def verify(
    export_dir: Path = typer.Argument(..., help="Export folder holding manifest.json and manifest.sig."),
    public_key: Optional[Path] = typer.Option(
        None, "--public-key", help="Ed25519 public key (default: $CASCADE_BUNDLE_PUBLIC_KEY)."),
) -> None:
    """Check the signature and every file digest of an export; exit 2 when it does not verify."""
    from cascade.bundles.signing import PUBLIC_KEY_ENV, configured_public_key, verify_export
    from cascade.errors import InvalidInputError

    with cli_errors():
        key = public_key or configured_public_key()
        if key is None:
            raise InvalidInputError(f"--public-key: required (or set {PUBLIC_KEY_ENV})")
        manifest = verify_export(export_dir, key)
    typer.echo(f"verified bundle {manifest.bundle_id}: {len(manifest.files)} files, signature ok")
