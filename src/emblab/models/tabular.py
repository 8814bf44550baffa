"""Tabular nets as LightningModules: MixedInputModel on any table's codes and normalised columns; regression
(through a scaled sigmoid, log target for sales) or classification. model=mixed_input is the lesson's
(Rossmann); model=tabular the recipe for any table (conf/model/tabular.yaml): numeric columns embedded too,
the output started at the training target's mean or class prior, epochs chosen by early stopping."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Accuracy, MeanSquaredError, MetricCollection

from emblab.core.errors import ConfigError
from emblab.core.settings import setting
from emblab.models.base import EmblabModule
from emblab.models.metrics import ExpRMSPE
from emblab.models.optim import Optim
from emblab.nets.tabular import TabularNet, emb_size


@dataclass
class MixedInputConfig:
    """model=mixed_input: the lesson's layers [1000, 500], dropouts ps [0.001, 0.01], emb_drop 0.04.
    emb_rule: fastai1, min(50, (card+1)//2), the lesson's | fastai2, min(600, round(1.6 * card^0.56));
    emb_szs: {column: width} for the columns it names. use_bn: BatchNorm1d after each hidden layer's ReLU.
    num_emb: none (the lesson: BatchNorm1d of the continuous columns) | periodic (PLR embeddings, d_num_emb wide,
    n_frequencies with init scales frequency_scale..frequency_scale_max) | piecewise (PLE over n_bins bins of the
    standard normal's quantiles: the training quantiles' bins with data.num_transform=quantile).
    sigmoid_range: regression through the data's y_range (the lesson's); false: none, the output is the training
    target's mean + its std x the net's.
    start_at_prior: classification starts at the training class frequencies (the head's bias, log).
    n_members: k > 1 trains k nets in one (TabM-mini: shared layers, a scaling vector and an output layer each)
    and predicts their mean (classification: of their probabilities)."""

    _target_: str = "emblab.models.tabular.MixedInputModel"
    layers: list[int] = setting([1000, 500], ge=1)
    ps: list[float] = setting([0.001, 0.01], ge=0, lt=1)
    emb_drop: float = setting(0.04, ge=0, lt=1)
    emb_rule: str = setting("fastai1", choices=("fastai1", "fastai2"))
    emb_szs: dict[str, int] = setting({})
    use_bn: bool = False
    num_emb: str = setting("none", choices=("none", "periodic", "piecewise"))
    n_bins: int = setting(48, ge=2)
    n_frequencies: int = setting(48, ge=1)
    frequency_scale: float = setting(0.01, gt=0)
    frequency_scale_max: float = setting(1.0, gt=0)
    d_num_emb: int = setting(16, ge=1)
    sigmoid_range: bool = True
    start_at_prior: bool = False
    n_members: int = setting(1, ge=1)
    optim: Optim = setting(Optim(name="adam", lr=1e-3))

    def check(self, prefix: str) -> None:
        if len(self.ps) != len(self.layers):
            raise ConfigError(f"{prefix}.ps has {len(self.ps)} dropout values for {len(self.layers)} layers")
        for col, width in self.emb_szs.items():
            if width < 1:
                raise ConfigError(f"{prefix}.emb_szs.{col}={width}: expected an integer >= 1")
        if self.n_members > 1 and self.use_bn:
            raise ConfigError(f"{prefix}.use_bn=true with {prefix}.n_members={self.n_members}: choose one")
        if self.frequency_scale_max < self.frequency_scale:
            raise ConfigError(
                f"{prefix}.frequency_scale_max={self.frequency_scale_max} is below "
                f"{prefix}.frequency_scale={self.frequency_scale}"
            )


class MixedInputModel(EmblabModule):
    """emb_card, n_cont, cat_names, out_sz, task, y_range, log_target and prior come from the data module
    (prior: the training target's [mean, std], or its class frequencies)."""

    Config = MixedInputConfig
    data_kind = "tabular"

    def __init__(
        self,
        cfg: MixedInputConfig,
        emb_card: list[int],
        n_cont: int,
        cat_names: list[str] | None = None,
        out_sz: int = 1,
        task: str = "regression",
        y_range=None,
        log_target: bool = False,
        prior: list[float] | None = None,
    ):
        super().__init__(
            cfg,
            emb_card=emb_card,
            n_cont=n_cont,
            cat_names=cat_names,
            out_sz=out_sz,
            task=task,
            y_range=y_range,
            log_target=log_target,
            prior=prior,
        )
        self.task, self.log_target = task, log_target
        self.cat_names = list(cat_names or [f"cat{i}" for i in range(len(emb_card))])
        sizes = [
            (card, int(cfg.emb_szs.get(name, emb_size(card, cfg.emb_rule))))
            for card, name in zip(emb_card, self.cat_names, strict=True)
        ]
        num_emb = {
            "none": None,
            "periodic": dict(
                kind="periodic",
                k=cfg.n_frequencies,
                d=cfg.d_num_emb,
                scale=cfg.frequency_scale,
                scale_max=cfg.frequency_scale_max,
            ),
            "piecewise": dict(kind="piecewise", n_bins=cfg.n_bins, d=cfg.d_num_emb),
        }[cfg.num_emb]
        self.net = TabularNet(
            sizes,
            n_cont,
            out_sz,
            cfg.layers,
            cfg.ps,
            cfg.emb_drop,
            y_range if task == "regression" and cfg.sigmoid_range else None,
            cfg.use_bn,
            num_emb=num_emb,
            n_members=cfg.n_members,
        )
        # sigmoid_range=false: out = mean + std * net, so the net works in the target's std units
        loc = prior if task == "regression" and not cfg.sigmoid_range and prior else [0.0, 1.0]
        self.register_buffer("y_loc", torch.tensor(loc[:2]), persistent=False)  # from the hparams' prior
        if cfg.start_at_prior and task == "classification" and prior:
            with torch.no_grad():  # the first epochs learn features, not the base rate
                bias = self.net.member_bias if cfg.n_members > 1 else self.net.out.bias
                bias.copy_(torch.tensor(prior).clamp(min=1e-6).log().expand_as(bias))
        if task == "regression":
            metrics = {"rmse": MeanSquaredError(squared=False), **({"exp_rmspe": ExpRMSPE()} if log_target else {})}
        else:
            metrics = {"acc": Accuracy(task="multiclass", num_classes=out_sz)}
        self.val_metrics = MetricCollection(metrics, prefix="val/")
        self.test_metrics = self.val_metrics.clone(prefix="test/")

    def members(self, cats: Tensor, conts: Tensor) -> Tensor:
        """Each member's output, (B, k, out_sz); regression in the target's units."""
        out = self.net(cats, conts)
        out = out if out.dim() == 3 else out[:, None, :]  # (B, k, out_sz)
        return self.y_loc[0] + self.y_loc[1] * out if self.task == "regression" else out

    def forward(self, cats: Tensor, conts: Tensor) -> Tensor:
        """(B,) predictions (regression) or (B, C) logits: the members' mean (of probabilities: log-mean-exp)."""
        out = self.members(cats, conts)  # (B, k, out_sz)
        if self.task == "regression":
            return out.mean(1).squeeze(1)
        if out.shape[1] == 1:
            return out[:, 0]
        return torch.logsumexp(torch.log_softmax(out, -1), dim=1) - math.log(out.shape[1])

    def embedding(self, name: str) -> Tensor:
        """The learned matrix of one categorical column, (card, emb_sz); row 0 is 'unknown'."""
        return self.net.embs[self.cat_names.index(name)].weight.detach()

    @torch.no_grad()
    def predict_target(self, cats: Tensor, conts: Tensor, batch_size: int = 65536) -> Tensor:
        """Predictions in the target's own units (exp of a log target; class probabilities for classification)."""
        outs = [self(cats[i : i + batch_size], conts[i : i + batch_size]) for i in range(0, len(cats), batch_size)]
        out = torch.cat(outs) if outs else torch.zeros(0)
        if self.task == "classification":
            return torch.softmax(out, dim=1)
        return torch.exp(out) if self.log_target else out

    def loss(self, preds: Tensor, y: Tensor) -> Tensor:
        return F.mse_loss(preds, y) if self.task == "regression" else F.cross_entropy(preds, y)

    def train_loss(self, batch) -> Tensor:
        cats, conts, y = batch  # (B, n_cat), (B, n_cont), (B,); rows of each member's own: (B, k, ...), (B, k)
        k = self.net.n_members
        if y.dim() == 2 and y.shape[1] != k:
            raise ConfigError(f"data.member_batches={y.shape[1]} with model.n_members={k}: set them equal, or to 1")
        out = self.members(cats, conts)  # (B, k, out_sz): each member learns on its own, the mean of their losses
        y = y if y.dim() == 2 else y[:, None].expand(-1, k)  # (B, k)
        if self.task == "regression":
            return F.mse_loss(out.squeeze(2), y)
        return F.cross_entropy(out.flatten(0, 1), y.flatten())

    def eval_step(self, batch, metrics: MetricCollection) -> None:
        cats, conts, y = batch
        preds, stage = self(cats, conts), metrics.prefix.rstrip("/")
        self.log(f"{stage}/loss", self.loss(preds, y), prog_bar=True)
        metrics.update(preds, y)
        self.log_dict(metrics, prog_bar=stage == "val")

    def validation_step(self, batch, batch_idx):
        self.eval_step(batch, self.val_metrics)

    def test_step(self, batch, batch_idx):
        self.eval_step(batch, self.test_metrics)
