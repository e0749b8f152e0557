"""What a killed Python stub costs, and where the watchdog's reload time goes (issue 18 §5).

    python benchmarks/stub_reload.py [--kills 2] [--rounds 2] [--clients 2] [--out benchmarks/results/stub_reload.json]

A real tritonserver (bundled 2.51, explicit model control, stub watchdog, the readiness endpoint of
``cascade serve --health-port``) serves a small trained export (SQLite online store) under
``--clients`` closed-loop gRPC clients; the ranking stub is killed with SIGKILL ``--kills`` times per
server. Per kill: seconds to the first not-ready probe (``/ready`` polled every 0.1 s), to ready
again, the watchdog's reload, failed requests, and the reload's phases from Triton's log:

* ``autocomplete``: "loading: ranking" -> "TRITONBACKEND_ModelInstanceInitialize" (with auto-complete
  on, the Python backend first starts a throwaway stub to complete the config),
* ``stub_init``: -> the model's "ranking: ready" (stub process start, imports, ONNX session, catalog),
* ``warmup_swap``: -> "successfully loaded 'ranking'" (warm-up requests, instance swap).

Variants, one server at a time, alternating in ``--rounds`` blocks: ``default`` and
``no_autocomplete`` (``--disable-auto-complete-config``; every cascade config is complete). Numbers
are noisy on a shared box: compare the variants' medians as a ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.faults import log, prepare  # noqa: E402
from loadtests.timeline import ClosedLoop, ProbeTimeline  # noqa: E402

VARIANTS = {"default": [], "no_autocomplete": ["--disable-auto-complete-config"]}
_LINE = re.compile(r"^[IWE](\d{2})(\d{2}) (\d{2}):(\d{2}):(\d{2})\.(\d{6}) \d+ \S+\] \"?(.*)$")
MARKS = {"loading": '"loading: ranking:', "instance": "TRITONBACKEND_ModelInstanceInitialize: ranking_",
         "ready": "ranking: ready", "loaded": "successfully loaded 'ranking'"}


def log_marks(path: Path, since: float) -> dict[str, float]:
    """Wall-clock times of the first MARKS lines at or after ``since`` (Triton logs UTC here)."""
    year = datetime.now(timezone.utc).year
    found: dict[str, float] = {}
    for line in path.read_text(errors="replace").splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        mon, day, hh, mm, ss, us = (int(g) for g in m.groups()[:6])
        t = datetime(year, mon, day, hh, mm, ss, us, tzinfo=timezone.utc).timestamp()
        if t < since:
            continue
        for name, needle in MARKS.items():
            if name not in found and needle in line:
                found[name] = t
    return found


def phases(marks: dict[str, float]) -> dict[str, float | None]:
    def span(a: str, b: str) -> float | None:
        return round(marks[b] - marks[a], 2) if a in marks and b in marks else None

    return {"autocomplete": span("loading", "instance"), "stub_init": span("instance", "ready"),
            "warmup_swap": span("ready", "loaded"), "total": span("loading", "loaded")}


def one_server(export: Path, variant: str, args: argparse.Namespace, work: Path, users: list[int]) -> list[dict]:
    from cascade.serving.ports import free_ports
    from cascade.serving.server import TritonServer, TritonServerConfig
    from cascade.serving.stubs import python_stubs

    http, grpc, metrics, health = free_ports(4)
    log_file = work / f"tritonserver-{variant}-{int(time.time())}.log"
    server = TritonServer(TritonServerConfig(
        model_repository=export / "model_repository", http_port=http, grpc_port=grpc, metrics_port=metrics,
        model_control_mode="explicit", load_models=["*"], stub_watchdog=True, exit_timeout_s=5, health_port=health,
        log_file=log_file, extra_args=list(VARIANTS[variant])))
    server.start()
    rows = []
    try:
        log(f"{variant}: ready in {server.wait_until_ready(300):.1f} s")
        load = ClosedLoop(server.grpc_url, users, clients=args.clients, seed=18).start()
        for _ in range(args.kills):
            time.sleep(3.0)
            stub = next(s for s in python_stubs(server.pid) if s.model == "ranking")
            probe = ProbeTimeline(f"{server.health_url}/ready", interval_s=0.1).start()
            events = len(server.watchdog.events)
            wall, start = time.time(), time.monotonic()
            os.kill(stub.pid, signal.SIGKILL)
            deadline = start + 120
            while time.monotonic() < deadline and not any("reloaded" in e for e in server.watchdog.events[events:]):
                time.sleep(0.1)
            time.sleep(1.5)
            probe.stop()
            reloaded = next((e for e in server.watchdog.events[events:] if "reloaded" in e), "")
            failed = [s for s in load.samples if s.sent >= start and not s.ok]
            row = {"variant": variant, **probe.summary(start), "failed": len(failed),
                   "watchdog_reload_s": float(re.search(r"in ([0-9.]+) s", reloaded).group(1)) if reloaded else None,
                   "phases_s": phases(log_marks(log_file, wall))}
            log(json.dumps(row))
            rows.append(row)
        load.stop()
    finally:
        server.stop()
    return rows


def summary(rows: list[dict]) -> dict:
    out: dict[str, dict] = {}
    for variant in VARIANTS:
        mine = [r for r in rows if r["variant"] == variant]

        def med(values: list) -> float | None:
            values = [v for v in values if v is not None]
            return round(statistics.median(values), 2) if values else None

        out[variant] = {"kills": len(mine),
                        "unready_after_s": med([r["unready_after_s"] for r in mine]),
                        "ready_again_after_s": med([r["ready_again_after_s"] for r in mine]),
                        "watchdog_reload_s": med([r["watchdog_reload_s"] for r in mine]),
                        "failed": sum(r["failed"] for r in mine),
                        **{f"{k}_s": med([r["phases_s"][k] for r in mine]) for k in ("autocomplete", "stub_init", "warmup_swap", "total")}}
    a, b = out["default"]["watchdog_reload_s"], out["no_autocomplete"]["watchdog_reload_s"]
    out["reload_ratio_no_autocomplete_vs_default"] = round(b / a, 3) if a and b else None
    return out


def main(argv: list[str] | None = None) -> int:
    import pandas as pd

    from cascade.workflows.export import export_repository

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="canonical dataset folder (default: a small synthetic one)")
    parser.add_argument("--work", default=str(ROOT / "build" / "bench" / "stub_reload"))
    parser.add_argument("--kills", type=int, default=2, help="stub kills per server")
    parser.add_argument("--rounds", type=int, default=2, help="blocks of (default, no_autocomplete)")
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "stub_reload.json"))
    args = parser.parse_args(argv)
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    data, artifacts = prepare(args, work)
    export = export_repository(data, work / "export", artifacts_dir=artifacts, force=True).root
    users = sorted(int(u) for u in pd.read_parquet(data / "train.parquet", columns=["user_id"])["user_id"].unique())[:200]
    rows: list[dict] = []
    for _ in range(args.rounds):
        for variant in VARIANTS:
            rows += one_server(export, variant, args, work, users)
    result = {"benchmark": "stub_reload", "clients": args.clients, "kills_per_server": args.kills, "rounds": args.rounds,
              "note": "shared 2-core box (other sessions' tests and training ran meanwhile): absolute seconds are noisy; "
                      "compare the variants' medians", "summary": summary(rows), "rows": rows,
              "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result["summary"], indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
