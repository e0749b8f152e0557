"""The Makefile's `bench` target runs scripts that exist and parse their options (each `--help`
runs the script's argument parser in a real child process)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _recipe(target: str) -> list[str]:
    lines = (ROOT / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"^{target}\s*:", line))
    recipe = []
    for line in lines[start + 1:]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    return recipe


def test_make_bench_runs_existing_benchmark_scripts() -> None:
    commands = _recipe("bench")
    scripts = [m.group(1) for c in commands for m in [re.search(r"python\s+(\S+\.py)", c)] if m]
    assert scripts, f"`make bench` runs no python script: {commands}"
    for script in scripts:
        assert (ROOT / script).is_file(), f"`make bench` runs {script}, which does not exist"
        done = subprocess.run([sys.executable, str(ROOT / script), "--help"], capture_output=True, text=True,
                              cwd=ROOT, timeout=120)
        assert done.returncode == 0, f"{script} --help failed: {done.stderr[-500:]}"
