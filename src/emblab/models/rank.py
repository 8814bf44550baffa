"""Top-N recommendation: a dot-product ranker (model=collab_rank) trained on implicit interactions (or ratings at or
above data.min_rating), scored on full rankings of every unseen item (NDCG, Recall, MRR, Hit at k).

The recipe, chosen to hold across data sets without retuning (BENCHMARKS.md "Top-N"): a softmax over the whole
catalogue per user, normalised per interaction; an L2 penalty on the rows each batch uses, once per interaction,
with a fixed prior per row, whose strength reg_scale * sqrt((n_users + n_items) / n_interactions) falls as the
data gets denser and never grows with it; Adam; epochs chosen by early stopping on validation NDCG, the best
weights restored (conf/recipe/collab_rank.yaml).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from emblab.core.settings import setting
from emblab.models.base import EmblabModule
from emblab.models.metrics import TopK
from emblab.models.optim import Optim
from emblab.nets.rank import DotRanker


@dataclass
class RankConfig:
    """model=collab_rank. loss: softmax (over every item; needs a batch x catalogue score matrix: a smaller
    data.batch_size when that does not fit) | sampled (n_neg shared negatives drawn by popularity^0.75, logQ
    corrected: for catalogues of millions; it ranks less well, BENCHMARKS.md). weight: how a positive's data weight
    (data.weight_col, e.g. play counts; 1 without one) counts: none | log1p | raw. k: the cutoff of the metrics."""

    _target_: str = "emblab.models.rank.RankModel"
    n_factors: int = setting(128, ge=1)
    item_bias: bool = True
    loss: str = setting("softmax", choices=("softmax", "sampled"))
    n_neg: int = setting(1024, ge=1)
    weight: str = setting("none", choices=("none", "log1p", "raw"))
    reg_scale: float = setting(0.3, ge=0)
    prior: float = setting(0.5, ge=0)
    init_std: float = setting(0.1, gt=0)
    k: int = setting(10, ge=1)
    optim: Optim = setting(Optim(name="adam", lr=1e-2, schedule="constant"))


class RankModel(EmblabModule):
    """Batches are users with their positives: (users (U,), rows (P,), items (P,), weights (P,)), row = position in
    the batch; validation and test batches are users with what they have seen and what they should find."""

    Config = RankConfig
    data_kind = "interactions"

    def __init__(self, cfg: RankConfig, n_users: int, n_items: int, rating_range=(1.0, 1.0)):
        super().__init__(cfg, n_users=n_users, n_items=n_items, rating_range=list(rating_range))
        self.net = DotRanker(n_users, n_items, cfg.n_factors, cfg.item_bias, cfg.init_std)
        # the penalty's strength and each row's prior multiplier (n + c) / n, from the training data (not saved)
        self.reg = 0.0
        self.register_buffer("u_mult", torch.ones(n_users), persistent=False)
        self.register_buffer("i_mult", torch.ones(n_items), persistent=False)
        self.register_buffer("item_logq", torch.zeros(n_items), persistent=False)  # sampled: log of the proposal
        self.val_topk, self.test_topk = TopK(cfg.k), TopK(cfg.k)

    @property
    def logged_metrics(self) -> tuple[str, ...]:
        return tuple(f"{stage}/{m}@{self.cfg.k}" for stage in ("val", "test") for m in TopK.NAMES)

    def setup(self, stage: str) -> None:
        dm = self.trainer.datamodule
        if stage != "fit" or dm is None:
            return
        indptr, items, weights = dm.train_ds.lists[0]
        w = self.weights(weights)
        owner = torch.repeat_interleave(torch.arange(len(indptr) - 1, device=items.device), indptr.diff())  # (P,)
        n_u = torch.bincount(owner, weights=w, minlength=len(self.u_mult)).float()  # (n_users,) weighted counts
        n_i = torch.bincount(items, weights=w, minlength=len(self.i_mult)).float()
        active_u, active_i = n_u > 0, n_i > 0
        self.reg = self.cfg.reg_scale * math.sqrt((int(active_u.sum()) + int(active_i.sum())) / len(items))
        self.u_mult.copy_((n_u + self.cfg.prior * n_u[active_u].mean()) / n_u.clamp(min=1e-6))
        self.i_mult.copy_((n_i + self.cfg.prior * n_i[active_i].mean()) / n_i.clamp(min=1e-6))
        q = torch.bincount(items, minlength=len(n_i)).float() ** 0.75 + 1e-6
        self.item_logq.copy_((q / q.sum()).log())

    def weights(self, w: Tensor) -> Tensor:
        return {"none": torch.ones_like(w), "log1p": torch.log1p(w), "raw": w}[self.cfg.weight]

    # -- what recommendations ask of a model (emblab.analysis.recommend)
    def forward(self, users: Tensor) -> Tensor:  # (U,) -> (U, n_items)
        return self.net(users)

    def score_items(self, users: Tensor) -> Tensor:
        return self.net(users)

    def score_pairs(self, users: Tensor, items: Tensor) -> Tensor:
        return self.net.score_pairs(users, items)

    def cold_start_scores(self, counts: Tensor) -> Tensor:
        """A typical (zero-embedding) user's scores: the item bias, or, without one, the interaction count."""
        return self.net.i_bias.detach().clone() if self.net.i_bias is not None else counts

    # -- training
    def train_loss(self, batch) -> Tensor:
        users, rows, items, w = batch  # (U,), (P,), (P,), (P,)
        w = self.weights(w)
        if self.cfg.loss == "softmax":
            logits = self.net(users)  # (U, n_items)
            nll = torch.logsumexp(logits, 1)[rows] - logits[rows, items]  # (P,)
        else:
            nll = self.sampled_nll(users, rows, items)
        u, i = self.net.u_weight(users), self.net.i_weight(items)  # (U, F), (P, F)
        penalty = u.pow(2).sum(1)[rows] * self.u_mult[users][rows] + i.pow(2).sum(1) * self.i_mult[items]  # (P,)
        # every rank divides by the positives of the whole (global) batch: DDP's mean of gradients is then the
        # gradient of one process taking all of them
        total = self.trainer.strategy.reduce(w.sum().detach(), reduce_op="sum") / self.trainer.world_size
        return (w * (nll + self.reg * penalty)).sum() / total

    def sampled_nll(self, users: Tensor, rows: Tensor, items: Tensor) -> Tensor:
        """The softmax's partition estimated from n_neg negatives shared by the batch, drawn by popularity^0.75
        and corrected by log(n_neg q) (logQ correction): (P,)."""
        neg = torch.multinomial(self.item_logq.exp(), self.cfg.n_neg, replacement=True)  # (N,)
        u = self.net.u_weight(users)  # (U, F)
        s_neg = u @ self.net.i_weight(neg).T + (self.net.i_bias[neg] if self.net.i_bias is not None else 0)
        lse = torch.logsumexp(s_neg - self.item_logq[neg] - math.log(self.cfg.n_neg), 1)  # (U,)
        s_pos = self.net.score_pairs(users[rows], items)  # (P,)
        return torch.logaddexp(s_pos, lse[rows]) - s_pos

    def log_train_loss(self, loss: Tensor, n_targets: int) -> None:
        self.log("train/loss", loss, prog_bar=True)

    # -- full-ranking evaluation
    def eval_step(self, batch, metric: TopK) -> None:
        users, seen_rows, seen_items, rel_rows, rel_items = batch
        metric.update(self.net(users), (seen_rows, seen_items), (rel_rows, rel_items))

    def validation_step(self, batch, batch_idx):
        self.eval_step(batch, self.val_topk)

    def test_step(self, batch, batch_idx):
        self.eval_step(batch, self.test_topk)

    def log_topk(self, metric: TopK, stage: str) -> None:
        values = metric.compute()  # summed over DDP ranks
        self.log_dict({f"{stage}/{name}": v for name, v in values.items()}, prog_bar=stage == "val")
        metric.reset()

    def on_validation_epoch_end(self) -> None:
        self.log_topk(self.val_topk, "val")

    def on_test_epoch_end(self) -> None:
        self.log_topk(self.test_topk, "test")
