"""Rebuild the trained torch models from an artifact folder (``meta.json`` + ``model.pt``): the one
loader used by training (``cascade.workflows``), the torch ranking backend and
``benchmarks/gpu_check.py``. Imports only torch and ``cascade.models`` (no Feast, FAISS, pandas)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cascade.errors import NotFoundError


def load_two_tower(retrieval_dir: Path, map_location: str = "cpu") -> Any:
    """The torch two-tower model of ``retrieval/`` (eval mode)."""
    import torch

    from cascade.models.features import FeatureSpec
    from cascade.models.two_tower import TwoTower, TwoTowerConfig

    retrieval_dir = Path(retrieval_dir)
    meta_path = retrieval_dir / "meta.json"
    if not meta_path.is_file() or not (retrieval_dir / "model.pt").is_file():
        raise NotFoundError(f"{retrieval_dir} holds no trained retrieval model (run `cascade train retrieval`)")
    meta = json.loads(meta_path.read_text())
    specs = [FeatureSpec.from_dict(s) for s in meta["specs"]]
    model = TwoTower(specs, TwoTowerConfig.from_dict(meta["config"]["model"]))
    model.load_state_dict(torch.load(retrieval_dir / "model.pt", weights_only=True, map_location=map_location))
    model.eval()
    return model


def load_dlrm(ranking_dir: Path, two_tower: Any | None, map_location: str = "cpu") -> Any:
    """The torch DLRM of ``ranking/`` (eval mode); ``two_tower`` is the frozen retrieval model it embeds."""
    import torch

    from cascade.models.dlrm import DLRM, DLRMConfig
    from cascade.models.features import FeatureSpec

    ranking_dir = Path(ranking_dir)
    if not (ranking_dir / "meta.json").is_file() or not (ranking_dir / "model.pt").is_file():
        raise NotFoundError(f"{ranking_dir} holds no trained ranking model (run `cascade train ranking`)")
    meta = json.loads((ranking_dir / "meta.json").read_text())
    specs = [FeatureSpec.from_dict(s) for s in meta["specs"]]
    model = DLRM(specs, DLRMConfig.from_dict(meta["config"]["model"]), two_tower=two_tower)
    model.load_state_dict(torch.load(ranking_dir / "model.pt", weights_only=True, map_location=map_location), strict=False)
    model.eval()
    return model
