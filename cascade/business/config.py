"""Typed business-rule configuration, shipped beside the ``ranking`` model (which applies the rules) as YAML."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cascade.errors import InvalidInputError

DEFAULT_RULES_FILE = Path(__file__).with_name("business_rules.yaml")


class CategoryCap(BaseModel):
    """At most ``max_per_category`` items of one category among the first ``window`` positions."""

    model_config = ConfigDict(extra="forbid")
    window: int = Field(ge=1, le=1000)
    max_per_category: int = Field(ge=1)


class BusinessRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    drop_seen: bool = True
    drop_unavailable: bool = True
    category_caps: list[CategoryCap] = Field(default_factory=lambda: [CategoryCap(window=5, max_per_category=3)])
    category_boosts: dict[str, float] = Field(
        default_factory=dict, description="additive score boost by raw category value"
    )
    item_boosts: dict[int, float] = Field(default_factory=dict, description="additive score boost by raw item id")
    max_explore_temperature: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _caps_sorted(self) -> "BusinessRules":
        self.category_caps = sorted(self.category_caps, key=lambda cap: cap.window)
        return self

    @classmethod
    def load(cls, path: Path | None = None) -> "BusinessRules":
        path = Path(path) if path is not None else DEFAULT_RULES_FILE
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError as exc:
            raise InvalidInputError(f"business rules file {path} does not exist") from exc
        except yaml.YAMLError as exc:
            raise InvalidInputError(f"business rules file {path} is not valid YAML: {exc}") from exc
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
            )
            raise InvalidInputError(f"business rules file {path}: {problems}") from exc
