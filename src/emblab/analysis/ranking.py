"""Full-ranking quality of any recommender's scores, with the metric the models log (emblab.models.metrics.TopK):
what the benchmarks use for every model alike (emblab's, EASE, ALS, most popular)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from emblab.data.rows import gather
from emblab.models.metrics import TopK


@torch.no_grad()
def rank_users(
    score: Callable[[Tensor], Tensor],
    users: Tensor,
    seen: tuple[Tensor, ...],
    relevant: tuple[Tensor, ...],
    k: int = 10,
    chunk: int | None = None,
) -> dict[str, float]:
    """TopK of a score function (users (U,) -> (U, n_items)) over users, their seen and relevant items given as
    CSR (indptr, indices), in chunks of users: what the benchmarks use for every model alike."""
    metric = TopK(k)
    for s in range(0, len(users), chunk or 256):
        u = users[s : s + (chunk or 256)]
        pairs = []
        for indptr, indices, *_ in (seen, relevant):
            rows, pos = gather(indptr, indices, u)
            pairs.append((rows, indices[pos]))
        metric.update(score(u), *pairs)
    return {name: float(v) for name, v in metric.compute().items()}
