"""Layout of an exported, versioned model repository (written by ``cascade export``):

```
EXPORT/
  export.json          ExportManifest: version, dataset, artifacts, candidate count
  model_repository/    what tritonserver serves: one folder per stage + the `recommend` ensemble
  artifacts/           workflow/, retrieval/, ranking/, index/, candidates/ (shared by the stages, no copies)
  feature_repo/        the Feast repo (online store settings, registry, item_snapshot/)
```
Stages find artifacts through config.pbtxt parameters, relative to EXPORT (overridable with
``CASCADE_EXPORT_ROOT`` / ``CASCADE_<MODEL>_<PARAM>`` environment variables, e.g. on Kubernetes).
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, Field

from cascade.errors import NotFoundError

MANIFEST = "export.json"
DEFAULT_CANDIDATES = 300
# the business rules, beside the model that applies them (ranking; its own model until round 5)
RULES_IN_EXPORT = Path("model_repository/ranking/1/business_rules.yaml")
LEGACY_RULES_IN_EXPORT = Path("model_repository/business_logic/1/business_rules.yaml")  # exports before round 5


class ExportManifest(BaseModel):
    version: str
    created_at: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    dataset_name: str
    dataset_hash: str
    artifacts_key: str
    snapshot_version: str = ""
    n_candidates: int = DEFAULT_CANDIDATES
    code_version: str = ""
    device: str = "cpu"  # cascade export --device: where the gpu_capable stages run (cascade/online/device.py)
    allow_cpu_fallback: bool = False


class ExportLayout:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    model_repository = property(lambda self: self.root / "model_repository")
    artifacts = property(lambda self: self.root / "artifacts")
    feature_repo = property(lambda self: self.root / "feature_repo")
    manifest_path = property(lambda self: self.root / MANIFEST)
    workflow = property(lambda self: self.artifacts / "workflow")
    index = property(lambda self: self.artifacts / "index")
    candidates = property(lambda self: self.artifacts / "candidates")  # item-to-item neighbours (optional)
    user_tower = property(lambda self: self.artifacts / "retrieval" / "user_tower.onnx")
    dlrm = property(lambda self: self.artifacts / "ranking" / "dlrm.onnx")

    @property
    def business_rules(self) -> Path:
        """The export's rules file (beside ``ranking``; beside ``business_logic`` in an export made
        before round 5, which still serves with its own three models)."""
        legacy = self.root / LEGACY_RULES_IN_EXPORT
        current = self.root / RULES_IN_EXPORT
        return legacy if legacy.is_file() and not current.is_file() else current

    def manifest(self) -> ExportManifest:
        if not self.manifest_path.is_file():
            raise NotFoundError(f"{self.root} is not a cascade export: {MANIFEST} is missing")
        return ExportManifest.model_validate_json(self.manifest_path.read_text())

    @classmethod
    def find(cls, path: Path) -> "ExportLayout":
        """The export containing ``path``: the export root itself, its model_repository/, or a
        model folder inside it."""
        path = Path(path).resolve()
        for candidate in (path, *path.parents[:3]):
            if (candidate / MANIFEST).is_file():
                return cls(candidate)
        raise NotFoundError(f"{path} is not inside a cascade export (no {MANIFEST} found); run `cascade export`")

    @classmethod
    def for_model(cls, model_dir: Path) -> "ExportLayout":
        override = os.environ.get("CASCADE_EXPORT_ROOT")
        return cls(Path(override)) if override else cls.find(model_dir)
