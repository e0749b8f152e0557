"""Exact retrieval with the item embeddings resident on a device (the GPU path of ``retrieval``).

One matrix product and one top-k per batch of queries: no partitioning or graph, so no ANN recall
loss at any catalog size. Embeddings are stored in ``float16``/``bfloat16`` (half the bytes to
stream per query batch; the search is memory-bound) or ``float32``. With ``rescore`` (default) the
top ``k + slack`` rows by the half-precision product are re-scored in float32 (query in float32,
stored embedding rows upcast) and re-sorted, so the order is the exact inner-product order over
the stored embeddings, not one rounded to half precision.

Filtering is exact too: each query's excluded rows (seen items, request exclusions) get ``-inf``
before the top-k, so a query still gets ``k`` eligible rows when the catalog has them; rows that
could only be filled with excluded items are dropped (``-1`` never leaves :meth:`search_many`).

Only numpy and torch are imported (lazily): ``benchmarks/gpu_check.py`` loads this module on a
machine without Feast or FAISS. :func:`embeddings_from_faiss` reads a served export's FAISS index.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from cascade.errors import InvalidInputError

DTYPES = ("float32", "float16", "bfloat16")
RESCORE_SLACK = 64  # extra half-precision candidates re-scored in float32


@dataclass(frozen=True)
class ExactSearchOptions:
    dtype: str = "float16"  # storage of the resident embeddings
    rescore: bool = True  # re-score the half-precision shortlist in float32
    blocks: int = 0  # >1: top-k per item block, then top-k of the block winners (exact; for very large catalogs)

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise InvalidInputError(f"exact retrieval dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.blocks < 0:
            raise InvalidInputError(f"exact retrieval blocks must be >= 0, got {self.blocks}")


class ExactSearcher:
    """Inner-product top-k over ``embeddings`` [n_items, d] kept on ``device``."""

    def __init__(self, embeddings: Any, device: str = "cpu", options: ExactSearchOptions | None = None) -> None:
        import torch

        self.options = options or ExactSearchOptions()
        self.device = torch.device(device)
        dtype = getattr(torch, self.options.dtype)
        if isinstance(embeddings, np.ndarray):
            if embeddings.ndim != 2 or embeddings.shape[0] == 0:
                raise InvalidInputError(f"item embeddings must be a non-empty [n_items, dim] array, got {embeddings.shape}")
            items = torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32))
        else:
            items = embeddings
        self.items = items.to(self.device, dtype).contiguous()
        self.n_items, self.dim = int(self.items.shape[0]), int(self.items.shape[1])

    @property
    def nbytes(self) -> int:
        return self.items.numel() * self.items.element_size()

    def _scores(self, queries: Any) -> Any:
        # CPU matmul in half precision is slow or unsupported on old builds: compute in float32 there
        if self.device.type == "cpu" and self.items.dtype != queries.dtype:
            return queries.float() @ self.items.float().T
        return queries.to(self.items.dtype) @ self.items.T

    def _topk(self, scores: Any, k: int) -> tuple[Any, Any]:
        import torch

        blocks = self.options.blocks
        n = scores.shape[1]
        if blocks <= 1 or n < blocks * k * 2:
            return torch.topk(scores, k, dim=1)
        width = -(-n // blocks)
        pad = width * blocks - n
        if pad:
            scores = torch.nn.functional.pad(scores, (0, pad), value=float("-inf"))
        s, i = torch.topk(scores.view(scores.shape[0], blocks, width), min(k, width), dim=2)
        i = i + (torch.arange(blocks, device=scores.device) * width).view(1, -1, 1)
        s, j = torch.topk(s.reshape(s.shape[0], -1), k, dim=1)
        return s, torch.gather(i.reshape(i.shape[0], -1), 1, j)

    def search(self, queries: np.ndarray, k: int, exclude: Sequence[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores float32 [B, k'], rows int64 [B, k']) with k' = min(k, n_items), best first;
        excluded rows and rows beyond the eligible ones have row -1 and score -inf."""
        import torch

        q = np.asarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[np.newaxis]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise InvalidInputError(f"query must be [batch, {self.dim}] float32, got shape {tuple(q.shape)}")
        if k < 1:
            raise InvalidInputError(f"k must be >= 1, got {k}")
        b = q.shape[0]
        k_out = min(int(k), self.n_items)
        with torch.inference_mode():
            qt = torch.from_numpy(np.ascontiguousarray(q)).to(self.device, non_blocking=True)
            scores = self._scores(qt)
            if exclude is not None and any(len(e) for e in exclude):
                if len(exclude) != b:
                    raise InvalidInputError(f"exclude must hold one row array per query ({b}), got {len(exclude)}")
                rows = np.concatenate([np.asarray(e, np.int64).reshape(-1) for e in exclude])
                owners = np.repeat(np.arange(b), [len(np.asarray(e).reshape(-1)) for e in exclude])
                ok = (rows >= 0) & (rows < self.n_items)
                scores[torch.from_numpy(owners[ok]).to(self.device), torch.from_numpy(rows[ok]).to(self.device)] = float("-inf")
            rescore = self.options.rescore and self.items.dtype != torch.float32
            shortlist = min(self.n_items, k_out + RESCORE_SLACK) if rescore else k_out
            top_s, top_i = self._topk(scores, shortlist)
            if rescore:
                exact = torch.einsum("bd,bkd->bk", qt, self.items[top_i].float())
                exact = exact.masked_fill(torch.isneginf(top_s), float("-inf"))
                exact, order = torch.sort(exact, dim=1, descending=True, stable=True)
                top_s, top_i = exact[:, :k_out], torch.gather(top_i, 1, order)[:, :k_out]
            top_s = top_s.float().cpu().numpy()
            top_i = top_i.cpu().numpy().astype(np.int64)
        top_i[np.isneginf(top_s)] = -1
        return top_s, top_i

    def search_many(self, queries: np.ndarray, k: int, exclude: Sequence[np.ndarray] | None = None) -> list[np.ndarray]:
        """One row array per query (best first, eligible rows only, at most ``k``)."""
        _, rows = self.search(queries, k, exclude)
        return [r[r >= 0] for r in rows]


def embeddings_from_faiss(index: Any) -> np.ndarray:
    """All stored vectors of a FAISS index (flat, HNSW-flat or IVF-flat) as float32 [n, d], row i =
    catalog row i. Raises for compressed indexes, whose vectors are not the model's embeddings."""
    import faiss

    n = int(index.ntotal)
    try:
        ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
    except RuntimeError:  # not an IVF index: flat and HNSW reconstruct directly
        ivf = None
    if ivf is not None:
        if not isinstance(ivf, faiss.IndexIVFFlat):
            raise InvalidInputError(f"exact retrieval needs uncompressed vectors; index type {type(ivf).__name__} is quantised")
        ivf.make_direct_map()
    return np.asarray(index.reconstruct_n(0, n), dtype=np.float32)
