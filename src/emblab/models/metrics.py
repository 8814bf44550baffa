"""Metrics the models log and the benchmarks compute: Kaggle Rossmann's exp_rmspe, and ranking quality
(Recall@k, NDCG@k) of a collab model on held-out ratings, with torchmetrics' retrieval metrics: each
validation user's candidates are all items they did not rate in training; the relevant ones are their
validation items rated at least `relevant`. `popularity` is the most-popular baseline, the same protocol.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.retrieval import RetrievalNormalizedDCG, RetrievalRecall


class ExpRMSPE(Metric):
    """Kaggle Rossmann's metric on a model that predicts log(Sales):
    sqrt(mean(((y - ŷ) / y)^2)) with y = exp(target), ŷ = exp(pred), rows with y == 0 left out."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("sum_sq", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:  # log-space (B,), (B,)
        y, y_hat = torch.exp(target.double()), torch.exp(preds.double())
        keep = y != 0  # exp never gives 0, but a caller may pass -inf for a zero-sales row
        pct = (y[keep] - y_hat[keep]) / y[keep]
        self.sum_sq += (pct**2).sum()
        self.count += keep.sum()

    def compute(self) -> Tensor:
        return torch.sqrt(self.sum_sq / self.count.clamp(min=1)).float()


def exp_rmspe(log_pred, log_true) -> float:
    """exp_rmspe of whole arrays of log-space predictions and targets (numpy or torch)."""
    m = ExpRMSPE()
    m.update(torch.as_tensor(log_pred), torch.as_tensor(log_true))
    return float(m.compute())


def seen_mask_rows(train_users: Tensor, train_items: Tensor, users: Tensor, n_items: int) -> Tensor:
    """(len(users), n_items) bool: the items each of `users` rated in training."""
    size = int(max(train_users.max() if len(train_users) else 0, users.max() if len(users) else 0)) + 1
    row_of = torch.full((size,), -1, dtype=torch.long)
    row_of[users] = torch.arange(len(users))
    rows = row_of[train_users]  # each training rating's row among `users`, or -1
    keep = rows >= 0
    mask = torch.zeros(len(users), n_items, dtype=torch.bool)
    mask[rows[keep], train_items[keep]] = True
    return mask


@torch.no_grad()
def ranking_scores(
    score: Callable[[Tensor, Tensor], Tensor],
    train: tuple[Tensor, Tensor],
    val: tuple[Tensor, Tensor, Tensor],
    n_items: int,
    k: int = 10,
    relevant: float = 4.0,
    max_users: int | None = 1000,
    seed: int = 0,
    chunk: int = 128,
) -> dict[str, float]:
    """{"recall": Recall@k, "ndcg": NDCG@k, "users": how many were scored}. score(users, items) -> (N,)
    scores of index pairs; train = (users, items), val = (users, items, ratings), all index tensors."""
    vu, vi, vr = (t.cpu() for t in val)
    tu, ti = (t.cpu() for t in train)
    liked = vr >= relevant
    users = torch.unique(vu[liked])  # users with something relevant to find
    if max_users and len(users) > max_users:  # a fixed random subset: the same users every epoch
        users = (
            users[torch.randperm(len(users), generator=torch.Generator().manual_seed(seed))[:max_users]].sort().values
        )
    recall, ndcg = RetrievalRecall(top_k=k), RetrievalNormalizedDCG(top_k=k)
    pos = torch.full((int(vu.max()) + 1 if len(vu) else 1,), -1, dtype=torch.long)  # user -> row in the chunk
    for s in range(0, len(users), chunk):
        u = users[s : s + chunk]  # (C,)
        pos[u] = torch.arange(len(u))
        items = torch.arange(n_items)
        preds = score(u.repeat_interleave(n_items), items.repeat(len(u))).float().cpu().view(len(u), n_items)
        target = torch.zeros(len(u), n_items, dtype=torch.bool)
        mine = liked & (pos[vu] >= 0)  # this chunk's relevant validation pairs
        target[pos[vu[mine]], vi[mine]] = True
        candidate = ~seen_mask_rows(tu, ti, u, n_items)  # never rank what the user rated in training
        indexes = u[:, None].expand(-1, n_items)
        for metric in (recall, ndcg):
            metric.update(preds[candidate], target[candidate], indexes=indexes[candidate])
        pos[u] = -1
    if not len(users):
        return {"recall": 0.0, "ndcg": 0.0, "users": 0}
    return {"recall": float(recall.compute()), "ndcg": float(ndcg.compute()), "users": len(users)}


def popularity(train_items: Tensor, n_items: int) -> Callable[[Tensor, Tensor], Tensor]:
    """The most-popular baseline as a score function: an item's training count, the same for every user."""
    counts = torch.bincount(train_items.cpu(), minlength=n_items).float()
    return lambda users, items: counts[items.cpu()]
