"""Collaborative filtering: EmbeddingDotBias (fastai lesson 4/5) and EmbeddingNN, in a LightningModule."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanAbsoluteError, MeanSquaredError, MetricCollection

from emblab.errors import ConfigError
from emblab.models.base import EmblabModule


def embedding(n: int, dim: int) -> nn.Embedding:
    e = nn.Embedding(n, dim)
    nn.init.trunc_normal_(e.weight, std=0.01, a=-0.02, b=0.02)  # fastai's init: small, so sigmoid starts mid-range
    return e


def scaled_sigmoid(x: Tensor, y_range) -> Tensor:
    lo, hi = y_range
    return torch.sigmoid(x) * (hi - lo) + lo


def sq_norms(rows: tuple[Tensor, ...]) -> Tensor:  # rows (B, F) or (B, 1) -> (B,)
    return sum(r.pow(2).sum(1) for r in rows)


class EmbeddingDotBias(nn.Module):
    """rating = sigmoid(u·i + u_bias + i_bias) scaled to y_range."""

    def __init__(self, n_users: int, n_items: int, n_factors: int = 50, y_range=(0.0, 5.5)):
        super().__init__()
        self.y_range = tuple(y_range)
        self.u_weight, self.i_weight = embedding(n_users, n_factors), embedding(n_items, n_factors)
        self.u_bias, self.i_bias = embedding(n_users, 1), embedding(n_items, 1)

    def gather(self, users: Tensor, items: Tensor):  # (B,), (B,) -> ((B, F), (B, 1)) per side
        return (self.u_weight(users), self.u_bias(users)), (self.i_weight(items), self.i_bias(items))

    def predict(self, u_rows, i_rows) -> Tensor:  # gathered rows -> (B,)
        (u, u_b), (i, i_b) = u_rows, i_rows
        res = (u * i).sum(1) + u_b.squeeze(1) + i_b.squeeze(1)  # (B, F) -> (B,)
        return scaled_sigmoid(res, self.y_range)

    def forward(self, users: Tensor, items: Tensor) -> Tensor:  # (B,), (B,) -> (B,)
        return self.predict(*self.gather(users, items))


class EmbeddingNN(nn.Module):
    """The neural variant: concatenated user and item embeddings -> MLP with dropout -> scaled sigmoid."""

    def __init__(
        self,
        n_users: int,
        n_items: int,
        n_factors: int = 50,
        hidden=(100,),
        emb_drop: float = 0.05,
        dropout=(0.5,),
        y_range=(0.0, 5.5),
    ):
        super().__init__()
        self.y_range = tuple(y_range)
        self.u_weight, self.i_weight = embedding(n_users, n_factors), embedding(n_items, n_factors)
        self.emb_drop = nn.Dropout(emb_drop)
        sizes, layers = [2 * n_factors, *hidden], []
        for n_in, n_out, p in zip(sizes[:-1], sizes[1:], dropout, strict=False):
            layers += [nn.Linear(n_in, n_out), nn.ReLU(), nn.Dropout(p)]
        self.layers = nn.Sequential(*layers, nn.Linear(sizes[-1], 1))

    def gather(self, users: Tensor, items: Tensor):  # (B,), (B,) -> ((B, F),) per side
        return (self.u_weight(users),), (self.i_weight(items),)

    def predict(self, u_rows, i_rows) -> Tensor:  # gathered rows -> (B,)
        x = self.emb_drop(torch.cat([*u_rows, *i_rows], dim=1))  # (B, 2F)
        return scaled_sigmoid(self.layers(x).squeeze(1), self.y_range)

    def forward(self, users: Tensor, items: Tensor) -> Tensor:  # (B,), (B,) -> (B,)
        return self.predict(*self.gather(users, items))


ARCHS = {"dot": EmbeddingDotBias, "nn": EmbeddingNN}


class CollabModel(EmblabModule):
    """Trains either arch on (user, item, rating) batches with MSE; validates MSE, RMSE, MAE.

    reg, reg_power: an L2 penalty on the rows each batch gathers (embeddings, and biases for dot),
    added to the batch's mean squared error. Each rating in the batch adds
    reg * |row|^2 / n_row^reg_power for its user's and its item's rows, n_row being the row's
    ratings in the training set. The penalty lives in the loss, so unlike the optimizer's decoupled
    weight_decay (every row shrunk once per optimizer step, rated or not) its strength against the
    data does not grow with the number of steps an epoch takes. reg_power 0 is classic SGD matrix
    factorisation's (Surprise's reg): a row's penalty grows with its ratings exactly as its data
    term does. reg_power 1 gives every row the same penalty whatever its ratings (a fixed Gaussian
    prior per row). In between, 0.5, a row's penalty grows with the square root of its ratings, so
    well-rated rows are shrunk relatively less than rarely-rated ones; the collab config's choice
    (BENCHMARKS.md, size sweep). reg 0 leaves regularisation to weight_decay."""

    data_kind = "ratings"

    def __init__(
        self,
        n_users: int,
        n_items: int,
        arch: str = "dot",
        n_factors: int = 50,
        y_range=(0.0, 5.5),
        hidden=(100,),
        emb_drop: float = 0.05,
        dropout=(0.5,),
        optim: dict | None = None,
        steps_per_call: int = 1,
        reg: float = 0.0,
        reg_power: float = 0.0,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.set_steps_per_call(steps_per_call)
        self.check_hparams(positive=("n_users", "n_items", "n_factors", "hidden"), fractions=("emb_drop", "dropout"))
        if arch == "dot":
            self.net = EmbeddingDotBias(n_users, n_items, n_factors, y_range)
        elif arch == "nn":
            if len(dropout) != len(hidden):
                raise ConfigError(f"model.dropout has {len(dropout)} values for {len(hidden)} hidden layers")
            self.net = EmbeddingNN(n_users, n_items, n_factors, hidden, emb_drop, dropout, y_range)
        else:
            raise ConfigError(f"model.arch={arch!r}: expected one of {', '.join(ARCHS)}")
        if reg < 0 or reg_power < 0:
            raise ConfigError(f"model.reg={reg}, model.reg_power={reg_power}: expected 0 or more")
        self.reg, self.reg_power = reg, reg_power
        # each rating's penalty weight for its user's and its item's rows: 1 / n_row^reg_power, set
        # from the training ratings when fitting starts (count_rows); not saved (inference has no use)
        self.register_buffer("u_reg_w", torch.ones(n_users), persistent=False)  # (n_users,)
        self.register_buffer("i_reg_w", torch.ones(n_items), persistent=False)  # (n_items,)
        self.val_metrics = MetricCollection(
            {"mse": MeanSquaredError(), "rmse": MeanSquaredError(squared=False), "mae": MeanAbsoluteError()},
            prefix="val/",
        )
        self.test_metrics = self.val_metrics.clone(prefix="test/")

    def forward(self, users: Tensor, items: Tensor) -> Tensor:
        return self.net(users, items)

    def count_rows(self, users: Tensor, items: Tensor) -> None:
        """Penalty weights from the training ratings' user and item indices, (N,) each."""
        for w, idx in ((self.u_reg_w, users), (self.i_reg_w, items)):
            n = torch.bincount(idx.to(w.device), minlength=len(w)).clamp(min=1).to(w.dtype)  # (n_rows,)
            w.copy_(n.pow(-self.reg_power))

    def setup(self, stage: str) -> None:
        dm = getattr(self.attached_trainer(), "datamodule", None)
        if stage == "fit" and self.reg and self.reg_power and dm is not None:
            users, items, _ = dm.train_ds.tensors
            self.count_rows(users, items)

    def train_loss(self, batch) -> Tensor:
        users, items, ratings = batch  # (B,), (B,), (B,)
        if not self.reg:
            return F.mse_loss(self(users, items), ratings)
        u_rows, i_rows = self.net.gather(users, items)
        penalty = self.u_reg_w[users] * sq_norms(u_rows) + self.i_reg_w[items] * sq_norms(i_rows)  # (B,)
        return F.mse_loss(self.net.predict(u_rows, i_rows), ratings) + self.reg * penalty.mean()

    def validation_step(self, batch, batch_idx):
        users, items, ratings = batch
        preds = self(users, items)
        self.log("val/loss", F.mse_loss(preds, ratings), prog_bar=True, sync_dist=True)
        self.val_metrics.update(preds, ratings)
        self.log_dict(self.val_metrics, prog_bar=False)

    def test_step(self, batch, batch_idx):
        users, items, ratings = batch
        preds = self(users, items)
        self.log("test/loss", F.mse_loss(preds, ratings), sync_dist=True)
        self.test_metrics.update(preds, ratings)
        self.log_dict(self.test_metrics)
