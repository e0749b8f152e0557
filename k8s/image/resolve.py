"""The serving image's Python install, resolved for the image's Python and platform with pip.

    python k8s/image/resolve.py lock     # rewrite constraints-serving.txt (pip's resolver), keeping
                                         # the current pins (--release NAME lets one move; --fresh: all)
    python k8s/image/resolve.py check    # fast: the lock is current and every pin resolves
    python k8s/image/resolve.py check --full   # also re-resolve everything against the lock
    python k8s/image/resolve.py check --force  # ignore the remembered success of this lock

The image is ``nvcr.io/nvidia/tritonserver:<TRITON_RELEASE>-py3`` (Ubuntu 24.04: Python 3.12,
glibc 2.39, x86_64); the Dockerfile installs exactly the lock (``--require-hashes``) and then the
project with ``--no-deps``. pip runs with ``--python-version``, ``--platform`` (every
``manylinux_2_X`` up to the image's glibc, since pip does not expand them itself) and
``--only-binary=:all:``, with no pip configuration files (PyPI only), so the answer is the same
on any machine. Exit status 1 with pip's message when something does not resolve.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
LOCK = HERE / "constraints-serving.txt"
PYPROJECT = ROOT / "pyproject.toml"

TRITON_RELEASE = "25.12"   # nvcr.io/nvidia/tritonserver:25.12-py3 (Triton 2.64, CUDA 13.1)
PYTHON_VERSION = "3.12"    # Ubuntu 24.04's python3 in the 25.xx containers
GLIBC = (2, 39)            # Ubuntu 24.04
EXTRAS = ("serving", "serving-gpu", "redis", "release", "train")   # release: boto3 for the model-sync containers; train: the retrain CronJob (ONNX export, baselines)
BUILD_REQUIREMENTS = ("setuptools>=68", "wheel")   # the project is built with --no-build-isolation
PROJECT = "cascade-recsys"
CHECK_WORKERS = 8
# A lock proven to resolve is remembered by its content (and the pip version and platform): the
# next check on this machine skips the network. `check --force` (or deleting the folder) re-runs.
STAMPS = ROOT / "build" / "image-check"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")
_INPUTS = re.compile(r"inputs sha256: ([0-9a-f]{64})")


def platform_args() -> list[str]:
    major, minor = GLIBC
    args = ["--python-version", PYTHON_VERSION, "--implementation", "cp", "--only-binary=:all:"]
    for m in range(17, minor + 1):
        args += ["--platform", f"manylinux_{major}_{m}_x86_64"]
    return args + ["--platform", "manylinux2014_x86_64", "--platform", "linux_x86_64"]


def project_requirements(pyproject: Path | None = None, extras: tuple[str, ...] = EXTRAS) -> list[str]:
    """Core dependencies + the extras' requirements (self-references like
    ``cascade-recsys[a,b]`` expanded), as pip requirement strings."""
    project = tomllib.loads((pyproject or PYPROJECT).read_text())["project"]
    optional = project.get("optional-dependencies", {})
    out, seen, todo = list(project["dependencies"]), set(), list(extras)
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        if extra not in optional:
            raise SystemExit(f"pyproject.toml has no extra {extra!r} (known: {', '.join(sorted(optional))})")
        seen.add(extra)
        for req in optional[extra]:
            self_ref = re.fullmatch(rf"{PROJECT}\[([^\]]+)\]", req.replace(" ", ""))
            if self_ref:
                todo += self_ref.group(1).split(",")
            else:
                out.append(req)
    return out


def inputs_hash() -> str:
    body = {"requirements": sorted(project_requirements()), "build": BUILD_REQUIREMENTS,
            "python": PYTHON_VERSION, "glibc": GLIBC, "triton": TRITON_RELEASE}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def pip_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PIP_") or k in ("PIP_CERT", "PIP_DEFAULT_TIMEOUT", "PIP_CACHE_DIR")}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def pip_dry_run(args: list[str], report: Path | None = None) -> None:
    # fast-deps: pip reads each wheel's metadata with HTTP range requests instead of downloading
    # it (the lock holds several GB of CUDA wheels).
    with tempfile.TemporaryDirectory(prefix="image-resolve-") as target:
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
               "--use-feature=fast-deps", "--target", target, *platform_args(), *args]
        if report is not None:
            cmd += ["--report", str(report)]
        proc = subprocess.run(cmd, env=pip_env(), text=True, capture_output=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"image resolution failed for Python {PYTHON_VERSION} manylinux_2_{GLIBC[1]} x86_64 "
                         f"(pip exit {proc.returncode}): {' '.join(args)[:300]}; see pip's message above")


def read_lock(path: Path = LOCK) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        match = _PIN.match(line)
        if match:
            pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def lock(keep: bool = True, release: tuple[str, ...] = ()) -> None:
    """Resolve the image's install. ``keep``: the current lock's versions are constraints (except
    the ``release``d names), so only what the inputs changed moves (like pip-compile); if that does
    not resolve, everything is re-resolved."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        args = [*project_requirements(), *BUILD_REQUIREMENTS]
        pins = read_lock() if keep and LOCK.is_file() else {}
        for name in release:
            pins.pop(name.lower().replace("_", "-"), None)
        if pins:
            constraints = Path(tmp) / "keep.txt"
            constraints.write_text("".join(f"{name}=={version}\n" for name, version in sorted(pins.items())))
            try:
                pip_dry_run([*args, "-c", str(constraints)], report)
            except SystemExit as error:
                raise SystemExit(f"{error}\nthe current pins do not resolve with the new inputs: release the "
                                 "conflicting ones (`resolve.py lock --release NAME`, see pip's message) or "
                                 "re-resolve everything (`resolve.py lock --fresh`, slow)") from None
        else:
            pip_dry_run(args, report)
        installs = json.loads(report.read_text())["install"]
    lines = [
        f"# Serving image lock: Python {PYTHON_VERSION}, manylinux_2_{GLIBC[1]} x86_64, for",
        f"# nvcr.io/nvidia/tritonserver:{TRITON_RELEASE}-py3 (k8s/image/Dockerfile installs it with --require-hashes).",
        f"# Extras {','.join(EXTRAS)} of pyproject.toml + build requirements; written by `make image-lock`",
        f"# (k8s/image/resolve.py, pip's resolver). Do not edit. inputs sha256: {inputs_hash()}",
    ]
    for item in sorted(installs, key=lambda i: i["metadata"]["name"].lower()):
        name, version = item["metadata"]["name"], item["metadata"]["version"]
        digest = item["download_info"].get("archive_info", {}).get("hashes", {}).get("sha256")
        if not digest:
            raise SystemExit(f"{name} {version}: pip reported no sha256 for {item['download_info']['url']}")
        lines.append(f"{name}=={version} \\\n    --hash=sha256:{digest}")
    LOCK.write_text("\n".join(lines) + "\n")
    print(f"{LOCK.relative_to(ROOT)}: {len(installs)} packages")


def stamp_path(full: bool) -> Path:
    from pip import __version__ as pip_version

    key = hashlib.sha256("\0".join([LOCK.read_text(), pip_version, *platform_args(), str(full)]).encode())
    return STAMPS / f"{key.hexdigest()[:32]}.ok"


def check(full: bool, force: bool = False) -> None:
    if not LOCK.is_file():
        raise SystemExit(f"{LOCK} is missing: run `make image-lock`")
    recorded = _INPUTS.search(LOCK.read_text())
    if not recorded or recorded.group(1) != inputs_hash():
        raise SystemExit(f"{LOCK.relative_to(ROOT)} is stale: pyproject.toml's serving requirements (or the image's "
                         "Python/platform) changed since it was written; run `make image-lock`")
    pins = read_lock()
    numpy = pins.get("numpy", "")
    if not numpy.startswith("1."):
        raise SystemExit(f"numpy {numpy or 'missing'} in the lock: the python-backend stub needs numpy < 2")
    stamp = stamp_path(full)
    if stamp.is_file() and not force:
        print(f"image-check: this lock ({len(pins)} wheels) already resolved for Python {PYTHON_VERSION} "
              f"manylinux_2_{GLIBC[1]} x86_64 on {stamp.read_text().strip()} (--force re-runs)")
        return
    requirements = [f"{n}=={v}" for n, v in pins.items()]
    # --no-deps per pin (the lock is the complete set pip's resolver produced), in parallel chunks.
    chunks = [requirements[i::CHECK_WORKERS] for i in range(CHECK_WORKERS)]
    with concurrent.futures.ThreadPoolExecutor(CHECK_WORKERS) as pool:
        list(pool.map(lambda chunk: pip_dry_run(["--no-deps", *chunk]), [c for c in chunks if c]))
    print(f"image-check: {len(pins)} pinned wheels resolve for Python {PYTHON_VERSION} manylinux_2_{GLIBC[1]} x86_64")
    with tempfile.TemporaryDirectory() as tmp:
        exact = Path(tmp) / "pins.txt"
        exact.write_text("\n".join(requirements) + "\n")
        if full:
            pip_dry_run(["-c", str(exact), *project_requirements(), *BUILD_REQUIREMENTS])
            print("image-check: the project's serving extras resolve completely within the lock")
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("lock", "check"))
    parser.add_argument("--full", action="store_true", help="check: also run the full resolution (slow when cold)")
    parser.add_argument("--force", action="store_true", help="check: ignore a previous success for this lock")
    parser.add_argument("--fresh", action="store_true", help="lock: re-resolve everything (default: keep the current pins)")
    parser.add_argument("--release", action="append", default=[], metavar="NAME",
                        help="lock: let this package move from its current pin (repeatable)")
    args = parser.parse_args()
    if args.command == "lock":
        lock(keep=not args.fresh, release=tuple(args.release))
    else:
        check(args.full, args.force)


if __name__ == "__main__":
    main()
