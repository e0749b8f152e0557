"""The admin key that guards Triton's admin-class APIs, on the server side and the client side.

Server: ``restricted_api_args(key)`` gives the tritonserver flags that put every admin-class API
(``ADMIN_APIS``) behind the header ``admin-key: <key>`` on HTTP and gRPC. Health, metadata and
inference stay open. API names are the ones the bundled 2.51 binary accepts (``tritonserver
--help``: health, metadata, inference, shared-memory, model-config, model-repository, statistics,
trace, logging); the gRPC flag is ``--grpc-restricted-protocol`` (there is no
``--grpc-restricted-api``).

Clients (rollout, model-sync, operators) pass ``admin_headers(protocol)`` to tritonclient calls.
The header names differ by protocol (measured on the bundled binary): HTTP checks ``admin-key``,
gRPC checks ``triton-grpc-protocol-admin-key`` (Triton prefixes gRPC restriction headers)::

    http_client.load_model("recommend", headers=admin_headers("http"))
    grpc_client.load_model("recommend", headers=admin_headers("grpc"))

The key comes from ``CASCADE_TRITON_ADMIN_KEY``, else from the file named by
``CASCADE_TRITON_ADMIN_KEY_FILE`` (Kubernetes: a mounted Secret, so the key is not in any process
environment; tritonserver and its stubs never inherit either variable). Triton itself only takes
the key as a command-line value, so it is readable in ``/proc/<pid>/cmdline`` by processes of the
same user in the same PID namespace; see k8s/README.md "Admin key".
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from cascade.errors import InvalidInputError

ADMIN_KEY_ENV = "CASCADE_TRITON_ADMIN_KEY"
ADMIN_KEY_FILE_ENV = "CASCADE_TRITON_ADMIN_KEY_FILE"
ADMIN_KEY_HEADER = "admin-key"  # the key name in the flags, and the HTTP header
GRPC_HEADER_PREFIX = "triton-grpc-protocol-"  # gRPC metadata key = prefix + ADMIN_KEY_HEADER
PROTOCOLS = ("http", "grpc")
# Every API a client of `recommend` does not need. Metrics (port 8002) are separate from the
# statistics API and stay scrapeable.
ADMIN_APIS: tuple[str, ...] = ("model-repository", "model-config", "shared-memory", "statistics", "trace", "logging")
OPEN_APIS: tuple[str, ...] = ("health", "metadata", "inference")
KNOWN_APIS = frozenset(ADMIN_APIS + OPEN_APIS)
# URL-safe characters only: the flag is parsed as `<apis>:<header>=<value>`, so ':' ',' '=' and
# whitespace would change its meaning. secrets.token_urlsafe(32) fits.
_KEY = re.compile(r"[A-Za-z0-9_.~-]{16,256}")


def validate_admin_key(key: str, field: str = "admin_key") -> str:
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        shown = f"{len(key)} characters" if isinstance(key, str) else type(key).__name__
        raise InvalidInputError(
            f"{field}: expected 16-256 URL-safe characters (A-Z a-z 0-9 _ . ~ -), e.g. "
            f"`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`; got {shown}")
    return key


def validate_apis(apis: Iterable[str], field: str = "restricted_apis") -> tuple[str, ...]:
    names = tuple(apis)
    unknown = sorted(set(names) - KNOWN_APIS)
    if unknown or not names:
        raise InvalidInputError(
            f"{field}: expected a non-empty list of {', '.join(sorted(KNOWN_APIS))}; got {list(names)}")
    return names


def restricted_api_args(key: str, apis: Iterable[str] = ADMIN_APIS) -> list[str]:
    """``--http-restricted-api`` and ``--grpc-restricted-protocol`` for ``apis`` behind ``key``."""
    value = f"{','.join(validate_apis(apis))}:{ADMIN_KEY_HEADER}={validate_admin_key(key)}"
    return [f"--http-restricted-api={value}", f"--grpc-restricted-protocol={value}"]


def admin_key_from_env(env: Mapping[str, str] | None = None) -> str | None:
    """``CASCADE_TRITON_ADMIN_KEY``, else the content of the file ``CASCADE_TRITON_ADMIN_KEY_FILE``
    names (validated), or None when neither is set."""
    env = os.environ if env is None else env
    value = env.get(ADMIN_KEY_ENV, "").strip()
    if value:
        return validate_admin_key(value, ADMIN_KEY_ENV)
    path = env.get(ADMIN_KEY_FILE_ENV, "").strip()
    if not path:
        return None
    try:
        value = Path(path).read_text().strip()
    except OSError as error:
        raise InvalidInputError(f"{ADMIN_KEY_FILE_ENV}: cannot read the admin key file {path} "
                                f"({error.strerror}); expected a file holding the key") from None
    if not value:
        raise InvalidInputError(f"{ADMIN_KEY_FILE_ENV}: the admin key file {path} is empty")
    return validate_admin_key(value, f"{ADMIN_KEY_FILE_ENV} ({path})")


def admin_header_name(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise InvalidInputError(f"protocol: expected one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    return ADMIN_KEY_HEADER if protocol == "http" else GRPC_HEADER_PREFIX + ADMIN_KEY_HEADER


def admin_headers(protocol: str, key: str | None = None, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Headers for a restricted call over ``protocol`` ("http" or "grpc", the tritonclient in
    use): the key (argument, else ``CASCADE_TRITON_ADMIN_KEY``) under that protocol's header
    name, or ``{}`` when no key is configured (a server started without one accepts the call)."""
    name = admin_header_name(protocol)
    value = validate_admin_key(key) if key is not None else admin_key_from_env(env)
    return {name: value} if value else {}


def redact(argv: Iterable[str], key: str | None) -> list[str]:
    """``argv`` with the key replaced, for logs."""
    return [a.replace(key, "***") if key else a for a in argv]
