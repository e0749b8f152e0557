"""Redis online-store settings: what an export may record, and what is added only at run time.

An export's ``feature_store.yaml`` records the Redis *address* (``host:port[,ssl=true][,db=N]...``
or a ``${ENV}`` placeholder that Feast expands at load). Secrets never go into it: a literal
``password=...`` in ``--redis-connection`` is rejected. At run time the password comes from
``CASCADE_REDIS_PASSWORD`` or from the file named by ``CASCADE_REDIS_PASSWORD_FILE`` (a mounted
Kubernetes Secret), TLS can be switched on with ``CASCADE_REDIS_SSL=true`` (or ``ssl=true`` in the
address), and the client gets explicit socket/connect timeouts and NO retries: redis-py's default is
no socket timeout and 10 retries with up to 1 s back-off, which is how one paused Redis hangs every
request (issue 18). Feast builds its client from the connection string (``key=value`` parts are
JSON-decoded and passed to ``redis.Redis``), so the runtime options travel the same way.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cascade.errors import InvalidInputError, NotFoundError

PASSWORD_ENV = "CASCADE_REDIS_PASSWORD"
PASSWORD_FILE_ENV = "CASCADE_REDIS_PASSWORD_FILE"
USERNAME_ENV = "CASCADE_REDIS_USERNAME"
SSL_ENV = "CASCADE_REDIS_SSL"
#: keys whose literal value is a secret and must never be written into an export
SECRET_KEYS = ("password",)
#: keys the runtime sets itself (the export must not pin them)
RUNTIME_KEYS = ("socket_timeout", "socket_connect_timeout", "retry", "retry_on_timeout", "retry_on_error")
_PLACEHOLDER = re.compile(r"^\$\{?[A-Za-z_][A-Za-z0-9_]*\}?$")


@dataclass(frozen=True)
class RedisTimeouts:
    """Client timeouts in seconds. Serving derives them from the lookup budget; offline work
    (materialize: large pipelined writes) uses generous ones."""

    socket_s: float
    connect_s: float

    @classmethod
    def serving(cls, budget_ms: float) -> "RedisTimeouts":
        """One lookup budget per socket operation: the guard reads inline (no worker thread), so
        these timeouts are what bound a read, and a store silent for a budget is a failure."""
        budget_s = max(budget_ms, 1.0) / 1000.0
        return cls(socket_s=budget_s, connect_s=budget_s)


OFFLINE_TIMEOUTS = RedisTimeouts(socket_s=60.0, connect_s=5.0)


def _options(connection: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in connection.split(",") if "=" in part)


def check_export_connection(connection: str) -> None:
    """Reject secrets and runtime-owned options in the connection string an export records."""
    options = _options(connection)
    for key in SECRET_KEYS:
        value = options.get(key)
        if value is not None and not _PLACEHOLDER.match(value):
            raise InvalidInputError(
                f"--redis-connection must not contain a literal {key}= (it would be written into the "
                f"export's feature_store.yaml and published with it); give it at run time via "
                f"{PASSWORD_ENV} or {PASSWORD_FILE_ENV} (a mounted secret file), or as a "
                f"placeholder such as {key}=${{REDIS_PASSWORD}}"
            )
    pinned = sorted(k for k in options if k in RUNTIME_KEYS)
    if pinned:
        raise InvalidInputError(
            f"--redis-connection must not set {', '.join(pinned)}: the server derives socket timeouts "
            "from the user lookup budget (CASCADE_FEATURE_BUDGET_MS) and disables client retries"
        )


def runtime_password(environ: dict[str, str] | None = None) -> str | None:
    """The Redis password from ``CASCADE_REDIS_PASSWORD`` or the file in ``CASCADE_REDIS_PASSWORD_FILE``."""
    env = os.environ if environ is None else environ
    path = env.get(PASSWORD_FILE_ENV)
    if path:
        file = Path(path)
        if not file.is_file():
            raise NotFoundError(f"{PASSWORD_FILE_ENV}={path}: no such file (mount the Redis AUTH secret there)")
        return file.read_text().strip("\r\n")
    return env.get(PASSWORD_ENV) or None


def runtime_connection(connection: str, timeouts: RedisTimeouts, environ: dict[str, str] | None = None) -> str:
    """``connection`` (already env-expanded) + credentials from the environment + client timeouts
    and no retries, in Feast's connection-string form."""
    env = os.environ if environ is None else environ
    options = _options(connection)
    extra: dict[str, object] = {}
    password = runtime_password(env)
    if password is not None and "password" not in options:
        if "," in password:
            raise InvalidInputError(
                f"{PASSWORD_ENV}: a Redis password with ',' cannot be passed through Feast's "
                "connection string (it splits on ','); rotate it to one without ','"
            )
        extra["password"] = password
    username = env.get(USERNAME_ENV)
    if username and "username" not in options:
        extra["username"] = username
    if env.get(SSL_ENV, "").lower() in ("1", "true", "yes") and "ssl" not in options:
        extra["ssl"] = True
    extra["socket_timeout"] = timeouts.socket_s
    extra["socket_connect_timeout"] = timeouts.connect_s
    extra["retry"] = None  # redis-py: no Retry object and no retry_on_error -> 0 retries
    parts = [part for part in connection.split(",") if part and part.split("=", 1)[0] not in RUNTIME_KEYS]
    parts += [f"{key}={json.dumps(value)}" for key, value in extra.items()]
    return ",".join(parts)


def redacted(connection: str) -> str:
    """``connection`` with secret values replaced, for logs and error messages."""
    parts = []
    for part in connection.split(","):
        key = part.split("=", 1)[0]
        parts.append(f"{key}=***" if "=" in part and key in SECRET_KEYS else part)
    return ",".join(parts)
