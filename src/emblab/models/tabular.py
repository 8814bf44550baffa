"""Tabular nets as LightningModules: MixedInputModel, the lesson's (Rossmann), on any table's codes and
normalised columns; regression through a scaled sigmoid (log target for sales) or classification."""

from __future__ import annotations

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
    emb_szs: {column: width} for the columns it names. use_bn: BatchNorm1d after each hidden layer's ReLU."""

    _target_: str = "emblab.models.tabular.MixedInputModel"
    layers: list[int] = setting([1000, 500], ge=1)
    ps: list[float] = setting([0.001, 0.01], ge=0, lt=1)
    emb_drop: float = setting(0.04, ge=0, lt=1)
    emb_rule: str = setting("fastai1", choices=("fastai1", "fastai2"))
    emb_szs: dict[str, int] = setting({})
    use_bn: bool = False
    optim: Optim = setting(Optim(name="adam", lr=1e-3))

    def check(self, prefix: str) -> None:
        if len(self.ps) != len(self.layers):
            raise ConfigError(f"{prefix}.ps has {len(self.ps)} dropout values for {len(self.layers)} layers")
        for col, width in self.emb_szs.items():
            if width < 1:
                raise ConfigError(f"{prefix}.emb_szs.{col}={width}: expected an integer >= 1")


class MixedInputModel(EmblabModule):
    """emb_card, n_cont, cat_names, out_sz, task, y_range and log_target come from the data module."""

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
        )
        self.task, self.log_target = task, log_target
        self.cat_names = list(cat_names or [f"cat{i}" for i in range(len(emb_card))])
        sizes = [
            (card, int(cfg.emb_szs.get(name, emb_size(card, cfg.emb_rule))))
            for card, name in zip(emb_card, self.cat_names, strict=True)
        ]
        self.net = TabularNet(
            sizes,
            n_cont,
            out_sz,
            cfg.layers,
            cfg.ps,
            cfg.emb_drop,
            y_range if task == "regression" else None,
            cfg.use_bn,
        )
        if task == "regression":
            metrics = {"rmse": MeanSquaredError(squared=False), **({"exp_rmspe": ExpRMSPE()} if log_target else {})}
        else:
            metrics = {"acc": Accuracy(task="multiclass", num_classes=out_sz)}
        self.val_metrics = MetricCollection(metrics, prefix="val/")
        self.test_metrics = self.val_metrics.clone(prefix="test/")

    def forward(self, cats: Tensor, conts: Tensor) -> Tensor:
        out = self.net(cats, conts)  # (B, out_sz)
        return out.squeeze(1) if self.task == "regression" else out

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
        cats, conts, y = batch  # (B, n_cat), (B, n_cont), (B,)
        return self.loss(self(cats, conts), y)

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
