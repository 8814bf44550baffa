"""Collaborative filtering as a LightningModule: EmbeddingDotBias or EmbeddingNN trained on ratings."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MeanAbsoluteError, MeanSquaredError, MetricCollection

from emblab.core.errors import ConfigError
from emblab.core.settings import setting
from emblab.models.base import EmblabModule
from emblab.models.optim import Optim
from emblab.nets import scaled_sigmoid
from emblab.nets.collab import EmbeddingDotBias, EmbeddingNN


@dataclass
class CollabConfig:
    """model=collab (arch dot, the default) and model=collab_nn (arch nn).

    reg, reg_power: an L2 penalty on the rows each batch gathers, in the loss. Each rating adds
    reg * |row|^2 / n_row^reg_power for its user's and its item's rows (n_row: the row's training ratings).
    Unlike decoupled weight decay (every row shrunk once per optimizer step, rated or not), its strength
    against the data does not grow with the number of steps. reg_power 0 is classic SGD matrix
    factorisation's (Surprise's reg), 1 a fixed prior per row; 0.5 shrinks well-rated rows relatively less
    (the collab recipe, BENCHMARKS.md "Size sweep"). side_reg: the side tables' penalty, side_reg·|table|²/N.
    y_range: null takes the data's rating scale."""

    _target_: str = "emblab.models.collab.CollabModel"
    arch: str = setting("dot", choices=("dot", "nn"))
    n_factors: int = setting(50, ge=1)
    y_range: list[float] | None = None
    hidden: list[int] = setting([100], ge=1)
    emb_drop: float = setting(0.05, ge=0, lt=1)
    dropout: list[float] = setting([0.5], ge=0, lt=1)
    reg: float = setting(1.0, ge=0)
    reg_power: float = setting(0.5, ge=0)
    side_reg: float = setting(1000.0, ge=0)
    optim: Optim = setting(Optim(name="adam", lr=3e-3))

    def check(self, prefix: str) -> None:
        if self.arch == "nn" and len(self.dropout) != len(self.hidden):
            raise ConfigError(f"{prefix}.dropout has {len(self.dropout)} values for {len(self.hidden)} hidden layers")
        if self.y_range is not None and (len(self.y_range) != 2 or not self.y_range[0] < self.y_range[1]):
            raise ConfigError(f"{prefix}.y_range={self.y_range}: expected [lo, hi] with lo < hi")


def sq_norms(rows: tuple[Tensor, ...]) -> Tensor:  # rows (B, F) or (B, 1) -> (B,)
    return sum(r.pow(2).sum(1) for r in rows)


class CollabModel(EmblabModule):
    """Trains either arch on (user, item, rating) batches with MSE; validates MSE, RMSE, MAE."""

    Config = CollabConfig
    data_kind = "ratings"

    def __init__(
        self,
        cfg: CollabConfig,
        n_users: int,
        n_items: int,
        rating_range=(0.0, 5.0),
        n_user_codes: int = 0,
        n_user_fields: int = 0,
        n_item_feats: int = 0,
    ):
        super().__init__(
            cfg,
            n_users=n_users,
            n_items=n_items,
            rating_range=list(rating_range),
            n_user_codes=n_user_codes,
            n_user_fields=n_user_fields,
            n_item_feats=n_item_feats,
        )
        lo, hi = rating_range  # a margin, as fastai's (0, 5.5) for 0.5..5 stars: a sigmoid never reaches its ends
        y_range = cfg.y_range or ((0.0, 1.1 * hi) if lo >= 0 else (lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo)))
        if cfg.arch == "dot":
            self.net = EmbeddingDotBias(
                n_users, n_items, cfg.n_factors, y_range, n_user_codes, n_user_fields, n_item_feats
            )
        elif n_user_codes or n_item_feats:
            raise ConfigError(f"data.side_features=true needs model.arch=dot (model.arch={cfg.arch!r} has none)")
        else:
            self.net = EmbeddingNN(n_users, n_items, cfg.n_factors, cfg.hidden, cfg.emb_drop, cfg.dropout, y_range)
        self.n_train = 1  # training ratings (for side_reg), counted when fitting starts
        # each rating's penalty weight for its user's and its item's rows, 1 / n_row^reg_power (not saved)
        self.register_buffer("u_reg_w", torch.ones(n_users), persistent=False)  # (n_users,)
        self.register_buffer("i_reg_w", torch.ones(n_items), persistent=False)  # (n_items,)
        self.val_metrics = MetricCollection(
            {"mse": MeanSquaredError(), "rmse": MeanSquaredError(squared=False), "mae": MeanAbsoluteError()},
            prefix="val/",
        )
        self.test_metrics = self.val_metrics.clone(prefix="test/")

    def forward(self, users: Tensor, items: Tensor) -> Tensor:  # (B,), (B,) -> (B,)
        return self.net(users, items)

    # -- what recommendations ask of a model (emblab.analysis.recommend)
    def score_pairs(self, users: Tensor, items: Tensor) -> Tensor:  # (N,), (N,) -> (N,) predicted ratings
        return self(users, items)

    def score_items(self, users: Tensor) -> Tensor:  # (U,) -> (U, n_items): every item's predicted rating
        n = self.hparams.n_items
        return self(users.repeat_interleave(n), torch.arange(n, device=users.device).repeat(len(users))).view(-1, n)

    def cold_start_scores(self, counts: Tensor) -> Tensor:
        """(n_items,): the rating a typical user (zero embedding) would be predicted to give: the learned bias
        through the scaled sigmoid (the dot product), the mean over users (the neural variant)."""
        if hasattr(self.net, "item_rows"):
            return scaled_sigmoid(self.net.item_rows()[1], self.net.y_range)
        n_u, step = self.hparams.n_users, 256
        sums = [self.score_items(torch.arange(s, min(s + step, n_u))).sum(0) for s in range(0, n_u, step)]
        return torch.stack(sums).sum(0) / n_u

    def setup(self, stage: str) -> None:
        """The training ratings' row counts (penalty weights) and the data's side tables (saved buffers)."""
        dm = self.trainer.datamodule
        if stage != "fit" or dm is None:
            return
        users, items, _ = dm.train_ds.tensors
        self.n_train = len(users)
        if self.cfg.reg and self.cfg.reg_power:
            self.count_rows(users, items)
        for name in ("user_codes", "item_feats"):
            if hasattr(self.net, name):
                table = getattr(dm, "side", {}).get(name)
                if table is None or table.shape != getattr(self.net, name).shape:
                    raise ConfigError(
                        f"the model has side table {name} but the data gives "
                        f"{'none' if table is None else tuple(table.shape)}: set data.side_features=true"
                    )
                getattr(self.net, name).copy_(table)

    def count_rows(self, users: Tensor, items: Tensor) -> None:
        """Penalty weights 1 / n_row^reg_power from the training ratings' user and item indices, (N,) each."""
        for w, idx in ((self.u_reg_w, users), (self.i_reg_w, items)):
            n = torch.bincount(idx.to(w.device), minlength=len(w)).clamp(min=1).to(w.dtype)  # (n_rows,)
            w.copy_(n.pow(-self.cfg.reg_power))

    def train_loss(self, batch) -> Tensor:
        users, items, ratings = batch  # (B,), (B,), (B,)
        u_rows, i_rows = self.net.gather(users, items)
        loss = F.mse_loss(self.net.predict(*self.net.with_side(users, items, u_rows, i_rows)), ratings)
        if self.cfg.reg:
            penalty = self.u_reg_w[users] * sq_norms(u_rows) + self.i_reg_w[items] * sq_norms(i_rows)  # (B,)
            loss = loss + self.cfg.reg * penalty.mean()
        if self.cfg.side_reg and self.net.side_tables:
            loss = loss + self.cfg.side_reg / self.n_train * sum(t.weight.pow(2).sum() for t in self.net.side_tables)
        return loss

    def eval_step(self, batch, metrics: MetricCollection) -> None:
        users, items, ratings = batch
        preds = self(users, items)
        stage = metrics.prefix.rstrip("/")
        self.log(f"{stage}/loss", F.mse_loss(preds, ratings), prog_bar=stage == "val", sync_dist=True)
        metrics.update(preds, ratings)
        self.log_dict(metrics)

    def validation_step(self, batch, batch_idx):
        self.eval_step(batch, self.val_metrics)

    def test_step(self, batch, batch_idx):
        self.eval_step(batch, self.test_metrics)
