"""Two-tower retrieval model: a user (query) tower and an item tower sharing the item-id embedding
table, so the user's ``recent_items`` are pooled through the very vectors the item tower starts
from (users with little history still get a query close to what they touched). Outputs are
L2-normalised; training uses in-batch sampled softmax with logQ popularity correction."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from cascade.errors import SchemaError
from cascade.models.features import ColumnTupleConfig, FeatureSpec, by_entity, find
from cascade.models.layers import FeatureEncoder, mlp


@dataclass
class TwoTowerConfig(ColumnTupleConfig):
    dim: int = 64
    item_embedding_dim: int = 64
    emb_cap: int = 32
    hidden: list[int] = field(default_factory=lambda: [256])
    dropout: float = 0.1
    temperature: float = 0.05
    item_id_column: str = "item_id"
    history_columns: tuple[str, ...] = ("recent_items",)
    history_positions: int = 20  # most recent positions the user tower reads (cost vs. signal)
    # columns the towers never read (seen_items is a filter, not a feature)
    ignore_columns: tuple[str, ...] = ("seen_items",)
    use_user_id: bool = True
    user_id_column: str = "user_id"



class Tower(nn.Module):
    """Encoder + MLP + L2 normalisation."""

    def __init__(self, encoder: FeatureEncoder, config: TwoTowerConfig) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = mlp(encoder.out_dim, list(config.hidden), config.dim, dropout=config.dropout)

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.encoder.specs]

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.normalize(self.head(self.encoder(features)), dim=-1)


class TwoTower(nn.Module):
    def __init__(self, specs: list[FeatureSpec], config: TwoTowerConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or TwoTowerConfig()
        self.specs = list(specs)
        item_id = find(specs, config.item_id_column)
        if item_id is None or item_id.entity != "item" or not item_id.is_categorical or item_id.is_list:
            raise SchemaError(
                f"two-tower needs a scalar categorical item column {config.item_id_column!r} in the workflow outputs"
            )
        self.item_embedding = nn.Embedding(int(item_id.cardinality or 1), config.item_embedding_dim)
        nn.init.normal_(self.item_embedding.weight, std=0.05)
        for name in config.history_columns:
            hist = find(specs, name)
            if hist is not None and hist.cardinality != item_id.cardinality:
                raise SchemaError(
                    f"{name!r} must share the {config.item_id_column!r} vocabulary "
                    f"(cardinality {hist.cardinality} != {item_id.cardinality})"
                )
        skip = set(config.ignore_columns)
        if not config.use_user_id:
            skip.add(config.user_id_column)
        user_specs = [s for s in by_entity(specs, "user") if s.name not in skip]
        item_specs = [s for s in by_entity(specs, "item") if s.name not in skip]
        if not user_specs:
            raise SchemaError("two-tower: the workflow has no user-entity outputs for the user tower")
        self.user_tower = Tower(
            FeatureEncoder(
                user_specs, config.emb_cap, history_columns=tuple(config.history_columns),
                history_table=self.item_embedding, history_positions=config.history_positions,
            ),
            config,
        )
        self.item_tower = Tower(
            FeatureEncoder(item_specs, config.emb_cap, shared={config.item_id_column: self.item_embedding}),
            config,
        )

    @property
    def user_inputs(self) -> list[FeatureSpec]:
        """Every user-entity workflow output (the ONNX inputs); the tower may not read all of them."""
        return by_entity(self.specs, "user")

    @property
    def item_inputs(self) -> list[FeatureSpec]:
        return by_entity(self.specs, "item")

    def query(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.user_tower(features)

    def item(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.item_tower(features)


def in_batch_softmax_loss(
    query: torch.Tensor,
    item: torch.Tensor,
    item_ids: torch.Tensor,
    log_q: torch.Tensor,
    temperature: float,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sampled softmax over in-batch items with logQ correction.

    ``log_q`` [B] is the log sampling probability of each in-batch item (its popularity share);
    in-batch duplicates of the positive item are masked so they are not counted as negatives.
    """
    logits = query @ item.T / temperature - log_q.unsqueeze(0)
    same = item_ids.unsqueeze(0) == item_ids.unsqueeze(1)
    eye = torch.eye(len(item_ids), dtype=torch.bool, device=logits.device)
    logits = logits.masked_fill(same & ~eye, -1e9)
    labels = torch.arange(len(item_ids), device=logits.device)
    loss = F.cross_entropy(logits, labels, reduction="none")
    if weights is not None:
        return (loss * weights).sum() / weights.sum().clamp(min=1e-6)
    return loss.mean()
