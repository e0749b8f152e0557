"""Cache workflow outputs by input hash, so a second ``make demo`` reuses what did not change.

A step's output folder holds ``_cascade_step.json`` with the hash of its inputs (files, parameters,
code version). :func:`is_fresh` tells whether the folder already holds the output for those inputs;
:func:`mark_done` records it after the step wrote its output (write-to-temp-then-rename first).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterable

STEP_FILE = "_cascade_step.json"
IGNORED_PARTS = ("__pycache__", ".pytest_cache")
IGNORED_SUFFIXES = (".pyc", ".pyo")


def _hashed(file: Path) -> bool:
    """Files that belong to a step's input: not our own marker, not bytecode caches (Python writes
    those when the code is imported, which must not change the hash)."""
    return (
        file.name != STEP_FILE
        and file.suffix not in IGNORED_SUFFIXES
        and not any(part in IGNORED_PARTS for part in file.parts)
    )


def hash_files(paths: Iterable[Path], chunk: int = 1 << 20) -> str:
    """sha256 over the names, sizes and bytes of ``paths`` (folders are walked in sorted order;
    bytecode caches and step markers are skipped)."""
    digest = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            if not _hashed(file):
                continue
            digest.update(str(file.name).encode())
            digest.update(str(file.stat().st_size).encode())
            with file.open("rb") as handle:
                while block := handle.read(chunk):
                    digest.update(block)
    return digest.hexdigest()


def inputs_hash(**inputs: Any) -> str:
    """Stable sha256 of JSON-serialisable step inputs (paths become strings)."""
    payload = json.dumps(inputs, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def is_fresh(out_dir: Path, key: str) -> bool:
    """True when ``out_dir`` was completed by a step whose inputs hashed to ``key``."""
    marker = Path(out_dir) / STEP_FILE
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()).get("inputs_hash") == key
    except (OSError, ValueError):
        return False


def mark_done(out_dir: Path, key: str, **extra: Any) -> None:
    """Record that ``out_dir`` holds the output for inputs hashing to ``key``."""
    marker = Path(out_dir) / STEP_FILE
    marker.write_text(json.dumps({"inputs_hash": key, **extra}, indent=2, default=str))


def replace_dir(source: Path, target: Path) -> None:
    """Move the finished folder ``source`` to ``target``, replacing what was there: the old folder is
    renamed aside first and deleted only after the new one is in place, so a crash never leaves
    ``target`` half-written (both paths must be on one filesystem)."""
    source, target = Path(source), Path(target)
    backup = None
    if target.exists():
        backup = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, backup)
    os.replace(source, target)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)
