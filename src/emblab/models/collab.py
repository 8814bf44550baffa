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
    """rating = sigmoid(u·i + u_bias + i_bias) scaled to y_range.

    With side tables (n_user_codes, n_item_feats from data.side_features), a user's vector and bias
    add those of its codes (gender, age band, occupation) and an item's the weighted sum of its
    features' (genre shares, release decade): a rarely rated id leans on the ones like it."""

    def __init__(
        self,
        n_users: int,
        n_items: int,
        n_factors: int = 50,
        y_range=(0.0, 5.5),
        n_user_codes: int = 0,
        n_user_fields: int = 0,
        n_item_feats: int = 0,
    ):
        super().__init__()
        self.y_range = tuple(y_range)
        self.u_weight, self.i_weight = embedding(n_users, n_factors), embedding(n_items, n_factors)
        self.u_bias, self.i_bias = embedding(n_users, 1), embedding(n_items, 1)
        self.side_tables = []  # for their own penalty
        if n_user_codes:  # codes filled from the data when fitting starts; saved, so a checkpoint predicts alone
            self.register_buffer("user_codes", torch.zeros(n_users, n_user_fields, dtype=torch.long))
            self.uc_weight, self.uc_bias = embedding(n_user_codes, n_factors), embedding(n_user_codes, 1)
            self.side_tables += [self.uc_weight, self.uc_bias]
        if n_item_feats:
            self.register_buffer("item_feats", torch.zeros(n_items, n_item_feats))
            self.if_weight, self.if_bias = embedding(n_item_feats, n_factors), embedding(n_item_feats, 1)
            self.side_tables += [self.if_weight, self.if_bias]

    def gather(self, users: Tensor, items: Tensor):  # (B,), (B,) -> ((B, F), (B, 1)) per side, the ids' own rows
        return (self.u_weight(users), self.u_bias(users)), (self.i_weight(items), self.i_bias(items))

    def with_side(self, users: Tensor, items: Tensor, u_rows, i_rows):  # the ids' rows plus their side rows
        (u, u_b), (i, i_b) = u_rows, i_rows
        if hasattr(self, "user_codes"):
            codes = self.user_codes[users]  # (B, fields)
            u, u_b = u + self.uc_weight(codes).sum(1), u_b + self.uc_bias(codes).sum(1)  # (B, fields, F) -> (B, F)
        if hasattr(self, "item_feats"):
            feats = self.item_feats[items]  # (B, n_feats)
            i, i_b = i + feats @ self.if_weight.weight, i_b + feats @ self.if_bias.weight  # -> (B, F), (B, 1)
        return (u, u_b), (i, i_b)

    def predict(self, u_rows, i_rows) -> Tensor:  # rows (side included) -> (B,)
        (u, u_b), (i, i_b) = u_rows, i_rows
        res = (u * i).sum(1) + u_b.squeeze(1) + i_b.squeeze(1)  # (B, F) -> (B,)
        return scaled_sigmoid(res, self.y_range)

    def item_rows(self) -> tuple[Tensor, Tensor]:
        """Every item's vector and bias, side included: (n_items, F), (n_items,)."""
        items = torch.arange(self.i_weight.num_embeddings, device=self.i_weight.weight.device)
        users = torch.zeros_like(items)  # any user: only the item side is kept
        _, (i, i_b) = self.with_side(users, items, *self.gather(users, items))
        return i, i_b.squeeze(1)

    def forward(self, users: Tensor, items: Tensor) -> Tensor:  # (B,), (B,) -> (B,)
        return self.predict(*self.with_side(users, items, *self.gather(users, items)))


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
        self.side_tables = []
        sizes, layers = [2 * n_factors, *hidden], []
        for n_in, n_out, p in zip(sizes[:-1], sizes[1:], dropout, strict=False):
            layers += [nn.Linear(n_in, n_out), nn.ReLU(), nn.Dropout(p)]
        self.layers = nn.Sequential(*layers, nn.Linear(sizes[-1], 1))

    def gather(self, users: Tensor, items: Tensor):  # (B,), (B,) -> ((B, F),) per side
        return (self.u_weight(users),), (self.i_weight(items),)

    def with_side(self, users: Tensor, items: Tensor, u_rows, i_rows):  # no side tables: the rows as they are
        return u_rows, i_rows

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
        n_user_codes: int = 0,
        n_user_fields: int = 0,
        n_item_feats: int = 0,
        side_reg: float = 0.0,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.set_steps_per_call(steps_per_call)
        self.check_hparams(positive=("n_users", "n_items", "n_factors", "hidden"), fractions=("emb_drop", "dropout"))
        if arch == "dot":
            self.net = EmbeddingDotBias(n_users, n_items, n_factors, y_range, n_user_codes, n_user_fields, n_item_feats)
        elif n_user_codes or n_item_feats:
            raise ConfigError(f"data.side_features=true needs model.arch=dot (model.arch={arch!r} has no side tables)")
        elif arch == "nn":
            if len(dropout) != len(hidden):
                raise ConfigError(f"model.dropout has {len(dropout)} values for {len(hidden)} hidden layers")
            self.net = EmbeddingNN(n_users, n_items, n_factors, hidden, emb_drop, dropout, y_range)
        else:
            raise ConfigError(f"model.arch={arch!r}: expected one of {', '.join(ARCHS)}")
        if reg < 0 or reg_power < 0 or side_reg < 0:
            raise ConfigError(
                f"model.reg={reg}, model.reg_power={reg_power}, model.side_reg={side_reg}: expected 0 or more"
            )
        self.reg, self.reg_power, self.side_reg = reg, reg_power, side_reg
        self.n_train = 1  # training ratings, for side_reg; set when fitting starts
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
        if stage != "fit" or dm is None:
            return
        users, items, _ = dm.train_ds.tensors
        if self.reg and self.reg_power:
            self.count_rows(users, items)
        self.n_train = len(users)
        for name in ("user_codes", "item_feats"):  # the data's side tables, into the saved buffers
            if hasattr(self.net, name):
                table = getattr(dm, "side", {}).get(name)
                if table is None or table.shape != getattr(self.net, name).shape:
                    raise ConfigError(
                        f"the model has side table {name} but the data gives "
                        f"{'none' if table is None else tuple(table.shape)}: set data.side_features=true"
                    )
                getattr(self.net, name).copy_(table)

    def train_loss(self, batch) -> Tensor:
        users, items, ratings = batch  # (B,), (B,), (B,)
        u_rows, i_rows = self.net.gather(users, items)
        loss = F.mse_loss(self.net.predict(*self.net.with_side(users, items, u_rows, i_rows)), ratings)
        if self.reg:
            penalty = self.u_reg_w[users] * sq_norms(u_rows) + self.i_reg_w[items] * sq_norms(i_rows)  # (B,)
            loss = loss + self.reg * penalty.mean()
        if self.side_reg and self.net.side_tables:
            loss = loss + self.side_reg / self.n_train * sum(t.weight.pow(2).sum() for t in self.net.side_tables)
        return loss

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
