"""The serving image on paper (no Docker engine here): the Dockerfile's stages, user, pinned base
and install commands; its lock matches pyproject.toml's serving extras (`make image-check` proves
the lock resolves for Python 3.12 manylinux x86_64 against PyPI); and everything the Triton stage
models import is in that lock, and so is the `train` extra the retrain CronJob runs in this image,
while load-test and test packages are not."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
IMAGE = ROOT / "k8s" / "image"
DOCKERFILE = IMAGE / "Dockerfile"
sys.path.insert(0, str(IMAGE))
import resolve  # noqa: E402  (k8s/image/resolve.py)

NOT_IN_SERVING = ("locust", "nvidia-pytriton", "cudf-cu12", "pytest", "moto",
                  "onnxruntime", "faiss-cpu")  # the last two: the GPU builds replace them in the image
PROVIDED_BY_TRITON = frozenset({"triton_python_backend_utils"})


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, rest) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(ln for ln in DOCKERFILE.read_text().splitlines() if not ln.lstrip().startswith("#")))
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1] if " " in ln.strip() else "")
            for ln in text.splitlines() if ln.strip()]


def stages() -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    current = None
    for op, rest in instructions():
        if op == "FROM":
            image, _, name = rest.partition(" AS ")
            current = name.strip()
            out[current] = [(op, image.strip())]
        elif current is not None:
            out[current].append((op, rest))
    return out


def test_multi_stage_build_on_the_pinned_triton_release() -> None:
    found = stages()
    assert list(found) == ["build", "runtime"]
    base = f"nvcr.io/nvidia/tritonserver:{resolve.TRITON_RELEASE}-py3@sha256:"
    for name, steps in found.items():
        assert steps[0][1].startswith(base) and re.search(r"@sha256:[0-9a-f]{64}$", steps[0][1]), (name, steps[0])
    build, runtime = found["build"], found["runtime"]
    runs = " ".join(rest for op, rest in build if op == "RUN")
    assert "--require-hashes" in runs and "-r /tmp/constraints-serving.txt" in runs and "--no-deps" in runs
    assert "--no-index ." in runs and "pip check" in runs and f"Python {resolve.PYTHON_VERSION}" in runs.replace("\\.", ".")
    assert ("COPY", "k8s/image/constraints-serving.txt /tmp/constraints-serving.txt") in build
    assert ("COPY", "--from=build /opt/cascade/venv /opt/cascade/venv") in runtime
    assert not any(op == "RUN" and "pip install" in rest for op, rest in runtime), "nothing resolved at runtime"
    env = " ".join(rest for op, rest in runtime if op == "ENV")
    assert "PATH=/opt/cascade/venv/bin:" in env, "the python-backend stub resolves the venv through PATH"


def test_runs_as_non_root_and_restricts_the_admin_apis() -> None:
    from cascade.serving.admin import ADMIN_APIS

    runtime = stages()["runtime"]
    users = [rest for op, rest in runtime if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root", "")
    uid = re.search(r"ARG APP_UID=(\d+)", DOCKERFILE.read_text())
    assert uid and int(uid.group(1)) >= 10000 and users[-1] == "${APP_UID}:${APP_UID}"
    cmd = json.loads(next(rest for op, rest in runtime if op == "CMD"))
    assert cmd[:3] == ["cascade", "serve", "/export/bundle"] and "--health-port=8003" in cmd
    env = " ".join(rest for op, rest in runtime if op == "ENV")
    # `cascade serve` restricts ADMIN_APIS with the key of that file (tests/unit/k8s/test_manifests.py)
    assert "CASCADE_TRITON_ADMIN_KEY_FILE=/var/run/secrets/cascade/admin-key" in env and ADMIN_APIS
    assert "CASCADE_TRITONSERVER_HOME=/opt/tritonserver" in env
    assert any(op == "HEALTHCHECK" for op, _ in runtime)


def test_the_gpu_image_gets_a_cuda_torch_and_boto3() -> None:
    """PyPI's manylinux x86_64 torch wheel is the CUDA build (its CUDA 13 runtime wheels and the
    triton compiler come with it; a +cpu build from download.pytorch.org has neither). The lock is
    resolved from PyPI alone (resolve.pip_env: no pip configuration), unlike this machine's venv,
    whose pip configuration finds a local torch-2.13.0+cpu wheel."""
    pins = resolve.read_lock()
    assert "+" not in pins["torch"], pins["torch"]
    assert {"nvidia-nccl-cu13", "nvidia-cudnn-cu13", "triton"} <= set(pins), "torch is not the CUDA build"
    assert resolve.pip_env()["PIP_CONFIG_FILE"] == os.devnull
    assert {"boto3", "botocore", "psutil"} <= set(pins), "model-sync downloads; the stub watchdog"


def test_build_context_carries_the_lock_and_not_the_venv() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git", "build", "k8s"} <= set(ignored)
    assert "!k8s/image/constraints-serving.txt" in ignored


def test_lock_is_current_and_keeps_numpy_below_2() -> None:
    text = resolve.LOCK.read_text()
    assert re.search(r"inputs sha256: ([0-9a-f]{64})", text).group(1) == resolve.inputs_hash(), \
        "stale: run `make image-lock`"
    pins = resolve.read_lock()
    assert pins["numpy"].startswith("1."), pins["numpy"]
    entries = re.findall(r"^([A-Za-z0-9._-]+)==(\S+) \\\n    --hash=sha256:[0-9a-f]{64}$", text, re.MULTILINE)
    assert len(entries) == len(pins), "every pin carries its sha256 (the Dockerfile uses --require-hashes)"


def test_the_retrain_cronjob_image_can_train_and_export_onnx() -> None:
    """k8s/base/retrain-cronjob.yaml runs `cascade retrain` (torch training + ONNX export through
    onnxscript) and `cascade release` in the serving image: the lock must hold the train extra."""
    import yaml

    job = yaml.safe_load((ROOT / "k8s" / "base" / "retrain-cronjob.yaml").read_text())
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    containers = pod.get("initContainers", []) + pod["containers"]
    cascade_steps = {c["command"][1]: c["image"] for c in containers if c.get("command", [""])[0] == "cascade"}
    assert cascade_steps.get("retrain") == cascade_steps.get("release") == "cascade-triton", cascade_steps
    assert "train" in resolve.EXTRAS
    pins = resolve.read_lock()
    assert {"onnx", "onnxscript", "torch", "implicit", "matplotlib"} <= set(pins)


def test_lock_covers_every_serving_requirement_and_no_test_package() -> None:
    from packaging.requirements import Requirement

    pins = resolve.read_lock()
    for req in map(Requirement, resolve.project_requirements()):
        name = req.name.lower().replace("_", "-")
        assert name in pins, f"{req} is not in the lock"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} violates {req}"
    for build in resolve.BUILD_REQUIREMENTS:
        assert Requirement(build).name in pins
    assert not set(NOT_IN_SERVING) & set(pins), set(NOT_IN_SERVING) & set(pins)


def test_platform_arguments_cover_every_glibc_up_to_the_image() -> None:
    args = resolve.platform_args()
    platforms = [args[i + 1] for i, a in enumerate(args) if a == "--platform"]
    assert "manylinux_2_17_x86_64" in platforms and f"manylinux_2_{resolve.GLIBC[1]}_x86_64" in platforms
    assert not any(p.startswith(f"manylinux_2_{resolve.GLIBC[1] + 1}") for p in platforms)
    assert args[args.index("--python-version") + 1] == "3.12" and "--only-binary=:all:" in args


def test_stale_lock_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    changed = tmp_path / "pyproject.toml"
    changed.write_text(resolve.PYPROJECT.read_text().replace('"feast==0.49.*"', '"feast==0.50.*"'))
    monkeypatch.setattr(resolve, "PYPROJECT", changed)
    with pytest.raises(SystemExit, match="stale"):
        resolve.check(full=False)


# ---------------------------------------------------------------- what the stage models import


def _module_file(name: str) -> Path | None:
    if name == "cascade.preprocessing" or name.startswith("cascade.preprocessing."):
        rel = Path("preprocessing", *name.split(".")[2:])
    elif name == "cascade.workflows" or name.startswith("cascade.workflows."):
        rel = Path("workflows", *name.split(".")[2:])
    else:
        rel = Path(*name.split("."))
    for candidate in (ROOT / rel.with_suffix(".py"), ROOT / rel / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path, package: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names}
    return found


def serving_imports() -> tuple[set[str], set[str]]:
    """(cascade modules reached, third-party top-level names) from every stage model.py,
    following function-level imports too."""
    todo = [(p, "") for p in ROOT.glob("model_repository/*/1/model.py")]
    seen_files, modules, third_party = set(), set(), set()
    while todo:
        path, package = todo.pop()
        if path in seen_files:
            continue
        seen_files.add(path)
        for name in _imports(path, package):
            top = name.split(".")[0]
            if top == "cascade":
                target = _module_file(name)
                if target is not None:
                    modules.add(name)
                    pkg = name if target.name == "__init__.py" else name.rpartition(".")[0]
                    todo.append((target, pkg))
            elif top and top not in sys.stdlib_module_names and top not in PROVIDED_BY_TRITON:
                third_party.add(top)
    return modules, third_party


def test_stage_models_import_only_what_the_image_holds() -> None:
    modules, third_party = serving_imports()
    assert "cascade.online.stages" in modules and "cascade.online.triton" in modules
    pins = set(resolve.read_lock())
    dists = packages_distributions()
    missing = {}
    for top in sorted(third_party):
        names = {d.lower().replace("_", "-") for d in dists.get(top, [])}
        if not names:
            assert importlib.util.find_spec(top) is None or top in PROVIDED_BY_TRITON, f"{top}: no distribution"
            continue
        # onnxruntime / faiss are provided by their GPU builds in the image
        names |= {f"{n}-gpu" for n in names} | {n.replace("-cpu", "-gpu-cu12") for n in names}
        if not names & pins:
            missing[top] = sorted(names)
    assert not missing, f"imported by the serving path but not in the image lock: {missing}"
