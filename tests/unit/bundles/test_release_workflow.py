""".github/workflows/model-release.yml only calls `cascade` commands and flags that exist (the
real CLI's parser, through typer/click), so a rename breaks this test, not the release."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import typer
import yaml

from cascade.cli import app

WORKFLOW = Path(__file__).resolve().parents[3] / ".github" / "workflows" / "model-release.yml"


def cascade_invocations(text: str) -> list[list[str]]:
    """Every `cascade ...` command line of the workflow's run steps (line continuations joined)."""
    steps = [s for job in yaml.safe_load(text)["jobs"].values() for s in job["steps"] if "run" in s]
    found = []
    for step in steps:
        script = step["run"].replace("\\\n", " ")
        for line in script.splitlines():
            match = re.search(r"(?:^|\s)(?:\.venv/bin/)?cascade\s+(.*)$", line)
            if match:
                found.append(shlex.split(match.group(1).replace("$", "X")))
    return found


def test_every_cascade_command_and_flag_in_the_workflow_exists() -> None:
    invocations = cascade_invocations(WORKFLOW.read_text())
    assert [argv[0] for argv in invocations] == ["release", "verify"]
    root = typer.main.get_command(app)
    for argv in invocations:
        command = root.commands.get(argv[0])  # type: ignore[attr-defined]
        assert command is not None, f"cascade {argv[0]} does not exist"
        flags = {opt for param in command.params for opt in param.opts + param.secondary_opts}
        used = [a for a in argv[1:] if a.startswith("--")]
        assert used or argv[0] == "verify", argv
        missing = [flag for flag in used if flag.split("=")[0] not in flags]
        assert not missing, f"cascade {argv[0]}: unknown flags {missing}"
        takes_value = {opt for param in command.params if not getattr(param, "is_flag", False) for opt in param.opts}
        for i, arg in enumerate(argv[1:], start=1):
            if arg in takes_value:
                assert i + 1 < len(argv) and not argv[i + 1].startswith("--"), f"{arg} needs a value"


def test_the_workflow_publishes_where_the_pods_look() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    assert workflow["env"]["MODELS"].startswith("s3://")
    release = next(a for a in cascade_invocations(WORKFLOW.read_text()) if a[0] == "release")
    assert release[release.index("--publish") + 1] == release[release.index("--champion") + 1]
