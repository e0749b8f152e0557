"""DLRM ranking model (Naumov et al. 2019): one embedding table per categorical workflow output,
a bottom MLP over the continuous outputs, pairwise dot-product interactions between all feature
vectors, and a top MLP producing one logit.

Optionally the frozen two-tower model is embedded in the graph: its query and item embeddings
join the interaction set and their cosine (the retrieval score) feeds the top MLP. Because the
towers read the same workflow outputs, the ONNX inputs stay "all workflow outputs by name" and
the retrieval score is available online without an extra input.

The user side (user embeddings, history pooling, the user tower) depends on the user only: with
``user_row`` [N] it runs once per user row (batch U) and is gathered to the N item rows, so serving
computes it once per request instead of once per candidate (the exported graph always takes
``user_row``).

Per-item statistics (log train popularity, log recent popularity, ...) live in a constant buffer
indexed by the encoded ``item_id`` (filled by the trainer with :meth:`DLRM.set_item_stats`), so
they also need no extra ONNX input. They feed the bottom MLP and the top MLP.

The last top-MLP layer starts at zero: an untrained ranker reproduces the retrieval order exactly
(logit = retrieval_weight x retrieval score) and training learns corrections to it."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from cascade.models.features import ColumnTupleConfig, FeatureSpec, find

CANDIDATE_SOURCE = "candidate_source"  # int64 [N]: bitmask of the retrieval sources (cascade/online/candidates.py)
CANDIDATE_SCORE = "candidate_score"  # float32 [N]: item-to-item score (summed neighbour weights, >= 0)
N_SOURCE_CODES = 8


def candidate_specs() -> list[FeatureSpec]:
    """The two per-candidate inputs retrieval adds (item axis, not workflow outputs)."""
    return [
        FeatureSpec(name=CANDIDATE_SOURCE, entity="item", kind="categorical", dtype="int64",
                    cardinality=N_SOURCE_CODES, list_length=None),
        FeatureSpec(name=CANDIDATE_SCORE, entity="item", kind="continuous", dtype="float32",
                    cardinality=None, list_length=None),
    ]
from cascade.models.layers import masked_mean, mlp
from cascade.models.two_tower import TwoTower


@dataclass
class DLRMConfig(ColumnTupleConfig):
    emb_dim: int = 16
    bottom: list[int] = field(default_factory=lambda: [64])
    top: list[int] = field(default_factory=lambda: [256, 64])
    dropout: float = 0.0
    item_id_column: str = "item_id"
    history_columns: tuple[str, ...] = ("recent_items",)
    history_positions: int = 20
    # seen_items is a filter; user_id would let the ranker memorise each user's (single) training list
    ignore_columns: tuple[str, ...] = ("seen_items", "user_id")
    use_retrieval: bool = True
    item_stats: int = 2  # per-item statistic columns in the ``item_stats`` buffer (0 = none)
    candidate_features: bool = True  # the retrieval source bitmask and item-to-item score as inputs



class DLRM(nn.Module):
    def __init__(self, specs: list[FeatureSpec], config: DLRMConfig | None = None, two_tower: TwoTower | None = None) -> None:
        super().__init__()
        self.config = config = config or DLRMConfig()
        self.specs = list(specs)
        d = config.emb_dim
        self.used = [s for s in self.specs if s.name not in set(config.ignore_columns)]
        self.tables = nn.ModuleDict()
        item_id = find(self.specs, config.item_id_column)
        self.history_names = [s.name for s in self.used if s.is_list and s.name in config.history_columns]
        for spec in self.used:
            if not spec.is_categorical or spec.name in self.history_names:
                continue
            table = nn.Embedding(int(spec.cardinality or 1), d)
            nn.init.normal_(table.weight, std=0.05)
            self.tables[spec.name] = table
        if self.history_names and (item_id is None or config.item_id_column not in self.tables):
            self.history_names = []
        self.continuous = [s.name for s in self.used if not s.is_categorical]
        user_names = {s.name for s in self.specs if s.entity == "user"}
        self._user_tables = [n for n in self.tables if n in user_names]
        self._user_continuous = [n for n in self.continuous if n in user_names]
        self.n_stats = int(config.item_stats) if config.item_id_column in self.tables else 0
        n_item_ids = int(item_id.cardinality or 1) if item_id is not None else 1
        self.register_buffer("item_stats", torch.zeros(n_item_ids, max(self.n_stats, 1)))
        n_dense = len(self.continuous) + self.n_stats
        n_vectors = len(self.tables) + 2 * len(self.history_names)
        self.bottom = mlp(n_dense, list(config.bottom), d, final_act=True) if n_dense else None
        if self.bottom is not None:
            n_vectors += 1
        self.two_tower = two_tower if (config.use_retrieval and two_tower is not None) else None
        if self.two_tower is not None:
            for p in self.two_tower.parameters():
                p.requires_grad_(False)
            dim = self.two_tower.config.dim
            self.query_proj = nn.Linear(dim, d)
            self.item_proj = nn.Linear(dim, d)
            n_vectors += 2
        self.n_vectors = n_vectors
        li, lj = torch.triu_indices(n_vectors, n_vectors, offset=1)
        self.register_buffer("li", li, persistent=False)
        self.register_buffer("lj", lj, persistent=False)
        top_in = len(li) + (d if self.bottom is not None else 0) + (1 if self.two_tower is not None else 0) + self.n_stats
        self.top = mlp(top_in, list(config.top), 1, dropout=config.dropout)
        if self.two_tower is not None:
            last = self.top[-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        if self.two_tower is not None:
            # residual path: the ranker starts from the retrieval order and learns corrections
            self.retrieval_weight = nn.Parameter(torch.tensor(1.0))
        self.has_candidate_score = CANDIDATE_SCORE in self.continuous
        if self.has_candidate_score:
            # a second residual: the item-to-item score, starting at 0 (epoch 0 = retrieval order)
            self.candidate_weight = nn.Parameter(torch.tensor(0.0))

    def set_item_stats(self, stats: torch.Tensor) -> None:
        """``stats`` [item_id cardinality, item_stats]: standardised per-item statistics."""
        if self.n_stats == 0:
            return
        if tuple(stats.shape) != (self.item_stats.shape[0], self.n_stats):
            raise ValueError(f"item_stats must be {(self.item_stats.shape[0], self.n_stats)}, got {tuple(stats.shape)}")
        self.item_stats.copy_(stats.to(self.item_stats.dtype))

    def train(self, mode: bool = True) -> "DLRM":
        super().train(mode)
        if self.two_tower is not None:
            self.two_tower.eval()  # frozen: no dropout
        return self

    def _user_side(self, features: dict[str, torch.Tensor], query: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Everything that depends on the user only, once per user row [U, ...]: the user-entity
        embeddings, history pooling and projected query stacked as ``vectors`` [U, K, d], the raw
        user continuous columns ``dense`` [U, Cu] and the query embedding ``query`` [U, D]."""
        out: dict[str, torch.Tensor] = {}
        vectors: list[torch.Tensor] = []
        for name in self._user_tables:
            x = features[name]
            table = self.tables[name]
            vectors.append(masked_mean(table(x), x > 0) if x.dim() == 2 else table(x))
        if self.history_names:
            table = self.tables[self.config.item_id_column]
            for name in self.history_names:
                ids = features[name][:, : self.config.history_positions]
                emb = table(ids)
                mask = ids > 0
                vectors.append(masked_mean(emb, mask))
                vectors.append(emb[:, 0] * mask[:, :1].to(emb.dtype))
        if self.two_tower is not None:
            q = self.two_tower.query(features) if query is None else query
            out["query"] = q
            vectors.append(self.query_proj(q))
        if vectors:
            out["vectors"] = torch.stack(vectors, dim=1)
        if self._user_continuous:
            out["dense"] = torch.stack([features[n].to(torch.float32) for n in self._user_continuous], dim=1)
        return out

    def forward(
        self, features: dict[str, torch.Tensor], query: torch.Tensor | None = None, item: torch.Tensor | None = None,
        user_row: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits [N], one per item row.

        ``user_row`` [N] int64: the user row (of the user-entity features, batch U) of each item
        row; the user side (embeddings, history pooling, the frozen user tower) runs once per user
        row and is gathered. Without it the user-entity features have N rows (row i scores user row
        i with item row i). ``query``/``item`` are precomputed two-tower embeddings (training
        speed-up; ``query`` per user row); when absent (and in the exported graph) the frozen towers
        compute them from ``features``. The candidate inputs (``candidate_source``,
        ``candidate_score``) default to 0 when absent (no source known, no item-to-item score)."""
        features = self._with_candidate_defaults(features)
        user = self._user_side(features, query)
        if user_row is not None:
            user = {k: v.index_select(0, user_row) for k, v in user.items()}
        user_vectors = list(user["vectors"].unbind(1)) if "vectors" in user else []
        user_dense = list(user["dense"].unbind(1)) if "dense" in user else []
        vectors: list[torch.Tensor] = []
        dense: torch.Tensor | None = None
        stats: torch.Tensor | None = None
        if self.n_stats:
            stats = self.item_stats[features[self.config.item_id_column]][:, : self.n_stats]
        if self.bottom is not None:
            cols = [
                user_dense[self._user_continuous.index(n)].unsqueeze(1) if n in self._user_continuous
                else self._item_dense(features, n).unsqueeze(1)
                for n in self.continuous
            ]
            if stats is not None:
                cols.append(stats)
            dense = self.bottom(torch.cat(cols, dim=1))
            vectors.append(dense)
        u = 0
        for name, table in self.tables.items():
            if name in self._user_tables:
                vectors.append(user_vectors[u])
                u += 1
                continue
            x = features[name]
            vectors.append(masked_mean(table(x), x > 0) if x.dim() == 2 else table(x))
        for _ in self.history_names:
            vectors += user_vectors[u:u + 2]
            u += 2
        extra: list[torch.Tensor] = []
        if self.two_tower is not None:
            q = user["query"]
            v = self.two_tower.item(features) if item is None else item
            vectors.append(user_vectors[u])
            vectors.append(self.item_proj(v))
            extra.append((q * v).sum(1, keepdim=True) / self.two_tower.config.temperature)
        stacked = torch.stack(vectors, dim=1)  # [N, F, d]
        inter = torch.bmm(stacked, stacked.transpose(1, 2))[:, self.li, self.lj]
        top_in = [inter] + ([dense] if dense is not None else []) + extra + ([stats] if stats is not None else [])
        logit = self.top(torch.cat(top_in, dim=1)).squeeze(-1)
        if self.two_tower is not None:
            logit = logit + self.retrieval_weight * extra[0].squeeze(-1)
        if self.has_candidate_score:
            logit = logit + self.candidate_weight * self._item_dense(features, CANDIDATE_SCORE)
        return logit

    def _with_candidate_defaults(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        names = [n for n in (CANDIDATE_SOURCE, CANDIDATE_SCORE) if find(self.used, n) is not None and n not in features]
        if not names:
            return features
        n_rows = features[self.config.item_id_column].shape[0]
        out = dict(features)
        if CANDIDATE_SOURCE in names:
            out[CANDIDATE_SOURCE] = torch.zeros(n_rows, dtype=torch.int64)
        if CANDIDATE_SCORE in names:
            out[CANDIDATE_SCORE] = torch.zeros(n_rows, dtype=torch.float32)
        return out

    @staticmethod
    def _item_dense(features: dict[str, torch.Tensor], name: str) -> torch.Tensor:
        value = features[name].to(torch.float32)
        if name == CANDIDATE_SCORE:  # summed weights >= 0, heavy-tailed: log scale
            value = torch.log1p(value.clamp(min=0.0))
        return value

    @property
    def user_inputs(self) -> list[FeatureSpec]:
        """User-entity inputs (batch U in the exported graph)."""
        return [s for s in self.specs if s.entity == "user"]

    @property
    def item_inputs(self) -> list[FeatureSpec]:
        """Item-entity inputs (batch N in the exported graph)."""
        return [s for s in self.specs if s.entity == "item"]
