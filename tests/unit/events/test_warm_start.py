"""Warm start across grown vocabularies: rows follow their raw values."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cascade.events.warm_start import row_map, warm_start


@dataclass
class _Categorify:
    num_oov_buckets: int


class _Workflow:
    """The two methods warm_start reads from a FittedWorkflow, over fixed vocabularies."""

    def __init__(self, vocabularies: dict[str, list], num_oov: int = 2) -> None:
        self.vocabularies = vocabularies
        self.num_oov = num_oov

    def vocabulary(self, output: str) -> np.ndarray:
        return np.asarray(self.vocabularies[output])

    def categorify(self, output: str) -> _Categorify:
        return _Categorify(self.num_oov)


class _Model(nn.Module):
    def __init__(self, n_users: int, n_items: int, hidden: int = 4) -> None:
        super().__init__()
        self.tables = nn.ModuleDict({"user_id": nn.Embedding(n_users, 3)})
        self.item_embedding = nn.Embedding(n_items, 3)
        self.head = nn.Linear(6, hidden)


def test_row_map_keeps_null_and_oov_rows_and_matches_values() -> None:
    new_rows, old_rows = row_map(np.array([7, 5, 9]), np.array([5, 11, 7]), num_oov=2)
    # rows 0..2 (null + 2 OOV), then value 5 (new pos 0 <- old pos 1), 7 (new pos 2 <- old pos 0)
    assert new_rows.tolist() == [0, 1, 2, 3, 5]
    assert old_rows.tolist() == [0, 1, 2, 4, 3]


def test_warm_start_remaps_embeddings_by_value_and_copies_the_rest() -> None:
    torch.manual_seed(0)
    old_wf = _Workflow({"user_id": [100, 200], "item_id": [1, 2, 3]})
    new_wf = _Workflow({"user_id": [200, 300, 100], "item_id": [3, 1, 2, 4]})
    old = _Model(3 + 2, 3 + 3)
    new = _Model(3 + 3, 3 + 4)
    fresh_row = new.tables["user_id"].weight[4].detach().clone()  # value 300: new, keeps its init
    report = warm_start(new, old.state_dict(), old_wf, new_wf)
    u_old, u_new = old.tables["user_id"].weight, new.tables["user_id"].weight
    torch.testing.assert_close(u_new[3], u_old[4])  # user 200
    torch.testing.assert_close(u_new[5], u_old[3])  # user 100
    torch.testing.assert_close(u_new[:3], u_old[:3])  # null + OOV rows
    torch.testing.assert_close(u_new[4], fresh_row)
    i_old, i_new = old.item_embedding.weight, new.item_embedding.weight
    torch.testing.assert_close(i_new[3], i_old[5])  # item 3 (item_embedding = item_id's table)
    torch.testing.assert_close(new.head.weight, old.head.weight)
    assert report.remapped == {"tables.user_id.weight": 5, "item_embedding.weight": 6}
    assert "head.weight" in report.copied and not report.fresh


def test_changed_widths_stay_fresh_and_are_reported() -> None:
    wf = _Workflow({"user_id": [1], "item_id": [1]})
    old, new = _Model(4, 4, hidden=4), _Model(4, 4, hidden=8)
    report = warm_start(new, old.state_dict(), wf, wf, skip_prefixes=("tables.",))
    assert set(report.fresh) == {"head.weight", "head.bias"}
    assert "tables.user_id.weight" not in report.remapped
