"""Metrics the models log and the benchmarks compute: Kaggle Rossmann's exp_rmspe, and full-ranking top-k
quality of recommendations (NDCG, Recall, MRR, Hit at k): every item a user has not seen is a candidate, never
a sample of them."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


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


class TopK(Metric):
    """NDCG@k, Recall@k, MRR@k and Hit@k of full rankings, averaged over users with something to find.

    For each user: its scores of every item (U, I), the items it has seen (never candidates) and the relevant
    ones, as (row, item) pairs. Binary relevance: DCG = sum over the hits at rank r of 1/log2(r + 1), divided
    by the DCG of min(#relevant, k) hits at the top; Recall = hits / min(#relevant, k); MRR = 1 / the rank of
    the first hit (0 without one); Hit = any hit. Sums and the user count are summed across DDP ranks."""

    is_differentiable, higher_is_better, full_state_update = False, True, False
    NAMES = ("ndcg", "recall", "mrr", "hit")

    def __init__(self, k: int = 10, **kwargs):
        super().__init__(**kwargs)
        self.k = k
        for name in (*self.NAMES, "users"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, scores: Tensor, seen: tuple[Tensor, Tensor], relevant: tuple[Tensor, Tensor]) -> None:
        scores = scores.float().clone()  # (U, I)
        scores[seen] = -torch.inf
        target = torch.zeros_like(scores, dtype=torch.bool)
        target[relevant] = True
        n_rel = target.sum(1).clamp(max=self.k).double()  # (U,)
        keep = n_rel > 0
        k = min(self.k, scores.shape[1])
        hits = target.gather(1, scores.topk(k, dim=1).indices).double()[keep]  # (U', k)
        disc = 1 / torch.log2(torch.arange(2, k + 2, device=scores.device, dtype=torch.float64))  # (k,)
        ideal = torch.cumsum(disc, 0)[(n_rel[keep] - 1).long().clamp(max=k - 1)]
        first = torch.where(hits.any(1), hits.argmax(1) + 1.0, torch.inf)
        self.ndcg += ((hits * disc).sum(1) / ideal).sum()
        self.recall += (hits.sum(1) / n_rel[keep]).sum()
        self.mrr += (1 / first).sum()
        self.hit += hits.any(1).double().sum()
        self.users += keep.sum()

    def compute(self) -> dict[str, Tensor]:
        n = self.users.clamp(min=1)
        return {f"{name}@{self.k}": (getattr(self, name) / n).float() for name in self.NAMES}
