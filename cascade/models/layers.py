"""Building blocks shared by the two-tower and DLRM models (all ONNX-exportable)."""

from __future__ import annotations

import torch
from torch import nn

from cascade.models.features import FeatureSpec, embedding_dim


def mlp(in_dim: int, hidden: list[int], out_dim: int, dropout: float = 0.0, final_act: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    prev = in_dim
    for width in hidden:
        layers += [nn.Linear(prev, width), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        prev = width
    layers.append(nn.Linear(prev, out_dim))
    if final_act:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def masked_mean(emb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``emb`` [B, L, d] over positions where ``mask`` [B, L] is true; zeros for empty rows."""
    m = mask.to(emb.dtype).unsqueeze(-1)
    return (emb * m).sum(1) / m.sum(1).clamp(min=1.0)


class HistoryPooler(nn.Module):
    """Pools a most-recent-first id sequence through a (possibly shared) embedding table:
    masked mean, recency-aware attention, and the most recent item. Index 0 is padding."""

    def __init__(self, embedding: nn.Embedding, length: int) -> None:
        """``length``: how many of the most recent positions are read (older ones are ignored)."""
        super().__init__()
        self.embedding = embedding
        dim = embedding.embedding_dim
        self.length = length
        self.position = nn.Parameter(torch.linspace(0.0, -1.0, length))
        self.attention = nn.Linear(dim, 1)
        self.out_dim = 3 * dim + 1

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids = ids[:, : self.length]
        mask = ids > 0
        emb = self.embedding(ids)  # [B, L, d]
        mean = masked_mean(emb, mask)
        logits = self.attention(emb).squeeze(-1) + self.position
        logits = logits.masked_fill(~mask, -1e4)
        weights = torch.softmax(logits, dim=1) * mask.to(emb.dtype)
        attended = (weights.unsqueeze(-1) * emb).sum(1)
        last = emb[:, 0] * mask[:, :1].to(emb.dtype)
        count = torch.log1p(mask.to(emb.dtype).sum(1, keepdim=True))
        return torch.cat([mean, attended, last, count], dim=1)


class FeatureEncoder(nn.Module):
    """Turns a dict of workflow output tensors into one dense vector.

    categorical scalar -> embedding; categorical list -> masked-mean embedding (or a
    :class:`HistoryPooler` over the shared item table for ``history_columns``); continuous -> as is.
    ``shared`` maps a column name to an externally owned embedding table (e.g. item_id).
    """

    def __init__(
        self,
        specs: list[FeatureSpec],
        emb_cap: int,
        shared: dict[str, nn.Embedding] | None = None,
        history_columns: tuple[str, ...] = (),
        history_table: nn.Embedding | None = None,
        history_positions: int | None = None,
    ) -> None:
        super().__init__()
        shared = shared or {}
        self.specs = list(specs)
        self.scalar = nn.ModuleDict()
        self.lists = nn.ModuleDict()
        self.histories = nn.ModuleDict()
        self.continuous: list[str] = []
        out = 0
        for spec in self.specs:
            if not spec.is_categorical:
                self.continuous.append(spec.name)
                out += 1
            elif spec.is_list and spec.name in history_columns and history_table is not None:
                length = int(spec.list_length or 1)
                pooler = HistoryPooler(history_table, min(length, history_positions or length))
                self.histories[spec.name] = pooler
                out += pooler.out_dim
            elif spec.name in shared:
                self.scalar[spec.name] = shared[spec.name]
                out += shared[spec.name].embedding_dim
            else:
                table = nn.Embedding(int(spec.cardinality or 1), embedding_dim(int(spec.cardinality or 1), emb_cap))
                nn.init.normal_(table.weight, std=0.05)
                (self.lists if spec.is_list else self.scalar)[spec.name] = table
                out += table.embedding_dim
        self.out_dim = out

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        parts: list[torch.Tensor] = []
        for spec in self.specs:
            x = features[spec.name]
            if spec.name in self.histories:
                parts.append(self.histories[spec.name](x))
            elif spec.name in self.scalar:
                parts.append(self.scalar[spec.name](x))
            elif spec.name in self.lists:
                parts.append(masked_mean(self.lists[spec.name](x), x > 0))
            else:
                parts.append(x.to(torch.float32).unsqueeze(-1))
        return torch.cat(parts, dim=1)
