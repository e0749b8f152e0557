"""CPU seconds (user + system) used by a server and its Python-backend stubs, read from /proc:
every process in the server's session (tritonserver starts its stubs in its own session). Linux only."""

from __future__ import annotations

import os
from pathlib import Path

_HZ = os.sysconf("SC_CLK_TCK")


def session_cpu_seconds(leader_pid: int) -> dict[str, float]:
    """{process name: CPU seconds so far} for the session of ``leader_pid``; stubs are named by
    their model (the ``.../<model>/1/model.py`` argument), the server ``tritonserver``."""
    session = os.getsid(leader_pid)
    out: dict[str, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) != session:
                continue
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, ProcessLookupError):  # exited while we looked
            continue
        seconds = (int(fields[11]) + int(fields[12])) / _HZ  # utime + stime
        name = _process_name(argv)
        out[name] = out.get(name, 0.0) + seconds
    return out


def _process_name(argv: list[str]) -> str:
    if argv and "tritonserver" in Path(argv[0]).name:
        return "tritonserver"
    for arg in argv:
        if arg.endswith("/model.py"):
            return Path(arg).parent.parent.name
    return Path(argv[0]).name if argv and argv[0] else "?"


def cpu_ms_per_request(before: dict[str, float], after: dict[str, float], requests: int) -> dict[str, float]:
    """Per-process CPU milliseconds per request between two snapshots (plus ``total``)."""
    per = {name: (after[name] - before.get(name, 0.0)) * 1000.0 / max(1, requests) for name in after}
    per["total"] = sum(per.values())
    return per
