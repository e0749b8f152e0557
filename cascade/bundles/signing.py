"""Ed25519 signatures over ``EXPORT/manifest.json`` (docs/DESIGN.md "Round 3 contracts").

The release step signs the exact bytes of ``manifest.json`` and stores the signature as base64
text in ``manifest.sig``. Whoever loads an export (``cascade verify`` in the model-sync sidecar,
``cascade rollout``) goes through ``cascade.bundles.manifest.verify_bundle``: with a public key
configured (argument, else ``CASCADE_BUNDLE_PUBLIC_KEY``), an unsigned export or a signature that
does not match is refused with :class:`~cascade.errors.BundleVerificationError`, as is a file
that differs from the signed manifest.

Keys: private keys as PKCS#8 PEM (what ``cascade keys generate`` writes) or a raw 32-byte seed in
base64; public keys as raw 32 bytes in base64 or SubjectPublicKeyInfo PEM. The public key is
configured with ``CASCADE_BUNDLE_PUBLIC_KEY`` (a path), e.g. a mounted Secret or ConfigMap.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cascade.bundles.manifest import MANIFEST_FILE, SIGNATURE_FILE
from cascade.errors import BundleVerificationError, InvalidInputError, NotFoundError

if TYPE_CHECKING:  # pragma: no cover
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

    from cascade.bundles.manifest import BundleManifest

logger = logging.getLogger(__name__)

PUBLIC_KEY_ENV = "CASCADE_BUNDLE_PUBLIC_KEY"
RAW_KEY_BYTES = 32


def _read_key_text(path: Path, what: str) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"{what} {path} does not exist; expected a key file (`cascade keys generate`)")
    return path.read_bytes().strip()


def _raw_key(data: bytes, path: Path, what: str) -> bytes:
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInputError(
            f"{what} {path}: expected PEM or {RAW_KEY_BYTES} raw bytes in base64 ({exc})") from exc
    if len(raw) != RAW_KEY_BYTES:
        raise InvalidInputError(
            f"{what} {path}: expected {RAW_KEY_BYTES} raw bytes in base64, got {len(raw)} bytes")
    return raw


def load_private_key(path: Path) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    data = _read_key_text(path, "private key")
    if data.startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise InvalidInputError(f"private key {path}: not an unencrypted PEM private key ({exc})") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise InvalidInputError(f"private key {path}: expected an Ed25519 key, got {type(key).__name__}")
        return key
    return Ed25519PrivateKey.from_private_bytes(_raw_key(data, path, "private key"))


def load_public_key(path: Path) -> Ed25519PublicKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    data = _read_key_text(path, "public key")
    if data.startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError as exc:
            raise InvalidInputError(f"public key {path}: not a PEM public key ({exc})") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise InvalidInputError(f"public key {path}: expected an Ed25519 key, got {type(key).__name__}")
        return key
    return Ed25519PublicKey.from_public_bytes(_raw_key(data, path, "public key"))


@dataclass(frozen=True)
class KeyPair:
    private_key: Path
    public_key: Path


def generate_keys(out_dir: Path, name: str = "bundle-signing", overwrite: bool = False) -> KeyPair:
    """Write ``<name>.key`` (PKCS#8 PEM, mode 0600) and ``<name>.pub`` (raw, base64) into ``out_dir``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pair = KeyPair(out / f"{name}.key", out / f"{name}.pub")
    for path in (pair.private_key, pair.public_key):
        if path.exists() and not overwrite:
            raise InvalidInputError(f"{path} exists already; refusing to replace a key (pass overwrite)")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    raw_public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    fd = os.open(pair.private_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    pair.public_key.write_text(base64.b64encode(raw_public).decode() + "\n")
    return pair


def _manifest_bytes(export_dir: Path) -> bytes:
    path = Path(export_dir) / MANIFEST_FILE
    if not path.is_file():
        raise NotFoundError(f"{path} is missing: an export carries {MANIFEST_FILE} (written by `cascade export`)")
    return path.read_bytes()


def sign_manifest(export_dir: Path, private_key_path: Path) -> Path:
    """Sign the exact bytes of ``EXPORT/manifest.json``; write base64 ``EXPORT/manifest.sig``."""
    data = _manifest_bytes(export_dir)
    signature = load_private_key(private_key_path).sign(data)
    path = Path(export_dir) / SIGNATURE_FILE
    path.write_text(base64.b64encode(signature).decode() + "\n")
    return path


def verify_signature(export_dir: Path, public_key_path: Path) -> None:
    """Check ``manifest.sig`` against the exact bytes of ``manifest.json`` (signature only; the
    file digests are ``cascade.bundles.manifest.verify_files``).

    Raises BundleVerificationError when the export is unsigned or the signature does not verify.
    """
    from cryptography.exceptions import InvalidSignature

    key = load_public_key(public_key_path)
    data = _manifest_bytes(export_dir)
    sig_path = Path(export_dir) / SIGNATURE_FILE
    if not sig_path.is_file():
        raise BundleVerificationError(
            f"export {export_dir} is unsigned: {SIGNATURE_FILE} is missing and a public key is "
            f"configured ({public_key_path}); sign it with `cascade sign EXPORT --key KEY`")
    try:
        signature = base64.b64decode(sig_path.read_bytes().strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BundleVerificationError(f"{sig_path}: expected a base64 Ed25519 signature ({exc})") from exc
    try:
        key.verify(signature, data)
    except InvalidSignature as exc:
        raise BundleVerificationError(
            f"export {export_dir}: {SIGNATURE_FILE} does not match {MANIFEST_FILE} under public key "
            f"{public_key_path} (modified manifest, or signed with another key)") from exc


def verify_export(export_dir: Path, public_key_path: Path) -> BundleManifest:
    """Signature, every file against the signed digests, and code compatibility (``verify_bundle``)."""
    from cascade.bundles.manifest import verify_bundle

    manifest = verify_bundle(export_dir, public_key=public_key_path)
    logger.info("export %s verified: bundle %s, %d files, signed", export_dir, manifest.bundle_id, len(manifest.files))
    return manifest


def configured_public_key(env: dict[str, str] | None = None) -> Path | None:
    """The public key path from ``CASCADE_BUNDLE_PUBLIC_KEY`` (None when unset or empty)."""
    value = (os.environ if env is None else env).get(PUBLIC_KEY_ENV, "").strip()
    return Path(value) if value else None


def verify_if_configured(export_dir: Path, public_key_path: Path | None = None) -> BundleManifest | None:
    """The signature check alone, for callers outside ``verify_bundle``: with a key (argument,
    else ``CASCADE_BUNDLE_PUBLIC_KEY``) the export must verify (:func:`verify_export`); without
    one nothing is checked and None is returned (logged)."""
    key = public_key_path or configured_public_key()
    if key is None:
        logger.warning("no bundle public key configured (%s): export %s not signature-checked",
                       PUBLIC_KEY_ENV, export_dir)
        return None
    return verify_export(export_dir, key)
