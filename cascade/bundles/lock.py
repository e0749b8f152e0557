"""One rollout at a time per server: an exclusive ``flock`` on a file named after the server URL.

The lock is held by the process (released by the kernel when it exits or is killed), so a killed
rollout never leaves a stale lock. It serialises rollouts started on one machine or pod (the k8s
sidecar, an operator's `kubectl exec`, CI on its runner), which are the writers of one server.
"""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cascade.errors import UnavailableError


def lock_path(url: str, lock_dir: Path | None = None) -> Path:
    folder = Path(lock_dir or os.environ.get("CASCADE_LOCK_DIR") or tempfile.gettempdir())
    return folder / f"cascade-rollout-{re.sub(r'[^A-Za-z0-9_.-]', '_', url)}.lock"


@contextmanager
def rollout_lock(url: str, timeout_s: float = 300.0, lock_dir: Path | None = None) -> Iterator[Path]:
    """Hold the rollout lock of ``url``; wait up to ``timeout_s`` for another holder."""
    path = lock_path(url, lock_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    holder = handle.read().strip() or "unknown"
                    raise UnavailableError(
                        f"another rollout of {url} holds {path} ({holder}) for more than {timeout_s:.0f} s; "
                        "live traffic is unchanged"
                    ) from None
                time.sleep(0.1)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n")
        handle.flush()
        try:
            yield path
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
