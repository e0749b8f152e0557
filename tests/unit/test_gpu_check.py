"""benchmarks/gpu_check.py, the one script the lent GPU machine runs, here with ``--device cpu
--quick``: it completes every section and writes its JSON with only what that machine has. The run
gets a bare interpreter (``python -S``, no site-packages) whose path holds numpy, torch and torch's
own requirements, linked from this environment, so Feast, FAISS, pandas, pyarrow, pydantic, ONNX,
tritonclient and the installed cascade are all absent; the script adds the repository root itself.
Its timings here are CPU numbers of a shared box (not asserted); parity and recall are."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# numpy + torch and the distributions torch requires (its METADATA Requires-Dist), nothing else
ALLOWED = ("numpy", "numpy.libs", "torch", "torchgen", "functorch", "typing_extensions.py", "filelock", "sympy",
           "mpmath", "networkx", "jinja2", "markupsafe", "fsspec", "setuptools", "_distutils_hack")


def _bare_site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    packages = Path(sysconfig.get_paths()["purelib"])
    for name in ALLOWED:
        if (packages / name).exists():
            os.symlink(packages / name, site / name)
    return site


def test_gpu_check_runs_on_cpu_with_only_numpy_and_torch(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check_cpu.json"
    env = {**os.environ, "PYTHONPATH": str(_bare_site(tmp_path)), "PYTHONNOUSERSITE": "1"}
    probe = subprocess.run([sys.executable, "-S", "-c", "import feast"], env=env, capture_output=True, text=True)
    if probe.returncode == 0:  # pragma: no cover - the isolation itself is broken
        pytest.fail("the bare interpreter can still import feast")
    proc = subprocess.run(
        [sys.executable, "-S", str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--quick", "--out", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["device"] == "cpu" and result["quick"] is True
    assert result["environment"]["torch"] and result["environment"]["onnxruntime"] is None  # absent there too
    variants = result["ranking"]["variants"]
    assert set(variants) == {"float32", "float16", "float32_static_shapes"}
    for name, entry in variants.items():
        assert "error" not in entry, (name, entry)
        for batch in ("batch1", "batch4"):
            assert entry[batch]["p50_ms"] > 0 and entry[batch]["p99_ms"] >= entry[batch]["p50_ms"]
            assert entry[batch]["max_abs_diff_vs_cpu_fp32"] <= (1e-5 if name.startswith("float32") else 1e-3), (name, batch)
            assert entry[batch]["same_top10_share"] == 1.0, (name, batch)
    for label, variant in result["retrieval"]["catalogs"]["5000"].items():
        assert "error" not in variant, (label, variant)
        assert variant["recall_vs_float32_exact"] == 1.0, label
        assert variant["batch4"]["achieved_bytes_s"] > 0
    for kind in ("two_tower", "dlrm"):
        assert "error" not in result["training"][kind], result["training"][kind]
        assert result["training"][kind]["cpu"]["examples_per_s"] > 0, kind
    assert "wrote" in proc.stdout
