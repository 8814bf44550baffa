"""MixedInputModel (fast.ai lesson 3/4, after Guo & Berkhahn 2016): an embedding per categorical
column, concatenated with the batch-normalised continuous columns, through linear layers.

    cats (B, n_cat) -> [emb_i(cats[:, i])] -> concat (B, sum emb_sz) -> emb_drop ─┐
    conts (B, n_cont) -> BatchNorm1d ─────────────────────────────────────────────┴> concat (B, n_in)
    -> [Linear -> ReLU -> (BatchNorm1d) -> Dropout(p)] per layer -> Linear (B, out_sz)
    regression: sigmoid scaled to y_range (log target for sales), MSE; classification: cross-entropy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import Accuracy, MeanSquaredError, Metric, MetricCollection

from emblab.errors import ConfigError
from emblab.models.base import EmblabModule


def emb_size(card: int, rule: str = "fastai1") -> int:
    """Width of the embedding for a column with `card` rows (training values + unknown)."""
    if rule == "fastai1":  # the lesson: half the cardinality, at most 50
        return min(50, (card + 1) // 2)
    if rule == "fastai2":  # fastai v2's empirical rule
        return min(600, round(1.6 * card**0.56))
    raise ConfigError(f"model.emb_rule={rule!r}: expected fastai1 or fastai2")


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


class TabularNet(nn.Module):
    def __init__(
        self,
        emb_szs: list[tuple[int, int]],
        n_cont: int,
        out_sz: int,
        layers: list[int],
        ps: list[float],
        emb_drop: float,
        y_range=None,
        use_bn: bool = False,
    ):
        super().__init__()
        self.embs = nn.ModuleList([nn.Embedding(card, sz) for card, sz in emb_szs])
        for e in self.embs:  # the lesson's emb_init: small uniform, wider for narrow embeddings
            sc = 2 / (e.embedding_dim + 1)
            nn.init.uniform_(e.weight, -sc, sc)
        self.emb_drop = nn.Dropout(emb_drop)
        self.bn_cont = nn.BatchNorm1d(n_cont) if n_cont else None
        n_in = sum(sz for _, sz in emb_szs) + n_cont
        blocks = []
        for n_out, p in zip(layers, ps, strict=False):
            lin = nn.Linear(n_in, n_out)
            nn.init.kaiming_normal_(lin.weight, nonlinearity="relu")  # keeps activations' scale through ReLUs
            blocks += [lin, nn.ReLU()] + ([nn.BatchNorm1d(n_out)] if use_bn else []) + [nn.Dropout(p)]
            n_in = n_out
        self.layers = nn.Sequential(*blocks)
        self.out = nn.Linear(n_in, out_sz)
        nn.init.kaiming_normal_(self.out.weight)
        self.y_range = tuple(y_range) if y_range is not None else None

    def forward(self, cats: Tensor, conts: Tensor) -> Tensor:  # (B, n_cat) int64, (B, n_cont) -> (B, out_sz)
        parts = []
        if len(self.embs):
            x = torch.cat([e(cats[:, i]) for i, e in enumerate(self.embs)], dim=1)  # (B, sum emb_sz)
            parts.append(self.emb_drop(x))
        if self.bn_cont is not None:
            parts.append(self.bn_cont(conts))  # (B, n_cont)
        x = self.out(self.layers(torch.cat(parts, dim=1)))
        if self.y_range is not None:
            lo, hi = self.y_range
            x = torch.sigmoid(x) * (hi - lo) + lo
        return x


class MixedInputModel(EmblabModule):
    """emb_card, n_cont, cat_names, out_sz, task, y_range, log_target come from the data module;
    the rest is the model config (lesson defaults: layers [1000, 500], ps [0.001, 0.01], emb_drop 0.04).
    emb_szs: {column: width} overrides the rule for the columns it names."""

    data_kind = "tabular"

    def __init__(
        self,
        emb_card: list[int],
        n_cont: int,
        cat_names: list[str] | None = None,
        out_sz: int = 1,
        task: str = "regression",
        y_range=None,
        log_target: bool = False,
        layers=(1000, 500),
        ps=(0.001, 0.01),
        emb_drop: float = 0.04,
        emb_rule: str = "fastai1",
        emb_szs: dict | None = None,
        use_bn: bool = False,
        optim: dict | None = None,
        steps_per_call: int = 1,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.set_steps_per_call(steps_per_call)
        self.check_hparams(positive=("emb_card", "out_sz", "layers"), fractions=("ps", "emb_drop"))
        if len(ps) != len(layers):
            raise ConfigError(f"model.ps has {len(ps)} dropout values for {len(layers)} layers")
        if task not in ("regression", "classification"):
            raise ConfigError(f"task={task!r}: expected regression or classification")
        self.cat_names = list(cat_names or [f"cat{i}" for i in range(len(emb_card))])
        sizes = [
            (card, int((emb_szs or {}).get(name, emb_size(card, emb_rule))))
            for card, name in zip(emb_card, self.cat_names, strict=False)
        ]
        self.net = TabularNet(
            sizes, n_cont, out_sz, list(layers), list(ps), emb_drop, y_range if task == "regression" else None, use_bn
        )
        if task == "regression":
            metrics = {"rmse": MeanSquaredError(squared=False)}
            if log_target:
                metrics["exp_rmspe"] = ExpRMSPE()
        else:
            metrics = {"acc": Accuracy(task="multiclass", num_classes=out_sz)}
        self.val_metrics = MetricCollection(metrics, prefix="val/")
        self.test_metrics = self.val_metrics.clone(prefix="test/")

    def forward(self, cats: Tensor, conts: Tensor) -> Tensor:
        out = self.net(cats, conts)  # (B, out_sz)
        return out.squeeze(1) if self.hparams.task == "regression" else out

    def embedding(self, name: str) -> Tensor:
        """The learned matrix of one categorical column, (card, emb_sz); row 0 is 'unknown'."""
        return self.net.embs[self.cat_names.index(name)].weight.detach()

    @torch.no_grad()
    def predict_target(self, cats: Tensor, conts: Tensor, batch_size: int = 65536) -> Tensor:
        """Predictions in the target's own units (exp of a log target; class index for classification)."""
        outs = [self(cats[i : i + batch_size], conts[i : i + batch_size]) for i in range(0, len(cats), batch_size)]
        out = torch.cat(outs) if outs else torch.zeros(0)
        if self.hparams.task == "classification":
            return out.argmax(1)
        return torch.exp(out) if self.hparams.log_target else out

    def loss(self, preds: Tensor, y: Tensor) -> Tensor:
        return F.mse_loss(preds, y) if self.hparams.task == "regression" else F.cross_entropy(preds, y)

    def train_loss(self, batch) -> Tensor:
        cats, conts, y = batch  # (B, n_cat), (B, n_cont), (B,)
        return self.loss(self(cats, conts), y)

    def _eval_step(self, batch, prefix: str, metrics: MetricCollection):
        cats, conts, y = batch
        preds = self(cats, conts)
        self.log(f"{prefix}/loss", self.loss(preds, y), prog_bar=True)
        metrics.update(preds, y)
        self.log_dict(metrics, prog_bar=prefix == "val")

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, "val", self.val_metrics)

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, "test", self.test_metrics)
