"""The character models (emblab.nets.char) as one LightningModule: NLL per character, stateful hidden state
carried between batches, and the next character's log-probabilities for generation."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from emblab.core.errors import ConfigError
from emblab.core.settings import setting
from emblab.models.base import EmblabModule
from emblab.models.optim import Optim
from emblab.nets.char import (
    ARCH_SHAPE,
    Char3,
    CharLoop,
    CharRnn,
    CharStateful,
    detach_hidden,
    init_identity,
    nll_loss_seq,
)


@dataclass
class CharConfig:
    """model=char3 | char_loop | char_loop_concat | char_rnn | char_seq_rnn | char_stateful_rnn | char_gru |
    char_lstm. cs: characters read (the data config follows it); bptt, n_layers, cell, the dropouts: the
    stateful models'. samples, sample_len, sample_temperature: text printed after each validation epoch."""

    _target_: str = "emblab.models.char.CharModel"
    arch: str = setting("char_rnn", choices=tuple(ARCH_SHAPE))
    cs: int = setting(8, ge=1)
    bptt: int = setting(8, ge=1)
    n_fac: int = setting(42, ge=1)
    n_hidden: int = setting(256, ge=1)
    cell: str = setting("rnn", choices=tuple(CharStateful.CELLS))
    n_layers: int = setting(1, ge=1)
    dropout: float = setting(0.0, ge=0, lt=1)
    emb_drop: float = setting(0.0, ge=0, lt=1)
    out_drop: float | None = setting(None, ge=0, lt=1)
    weight_drop: float = setting(0.0, ge=0, lt=1)
    identity_init: bool = False
    compile: bool = False  # torch.compile the training steps (BENCHMARKS.md: measured, off by default)
    samples: int = setting(2, ge=0)
    sample_len: int = setting(200, ge=1)
    sample_temperature: float = setting(0.8, ge=0)
    optim: Optim = setting(Optim(name="adam", lr=1e-3))

    def check(self, prefix: str) -> None:
        if self.arch == "char3" and self.cs != 3:
            raise ConfigError(f"char3 reads exactly 3 characters; got {prefix}.cs={self.cs}")
        if self.identity_init and not (self.arch in ("char_rnn", "char_seq_rnn") or self.cell == "rnn"):
            raise ConfigError(
                f"{prefix}.identity_init=true needs an nn.RNN model (char_rnn, char_seq_rnn, stateful "
                f"cell=rnn); {self.arch} with cell={self.cell} has none"
            )


class CharModel(EmblabModule):
    """Any of the architectures as a LightningModule. vocab_size, data_shape, cs and bptt come from the data.
    A stateful model keeps one hidden state per stage (train / val) on the module: detached after every batch,
    reset at the start of every training epoch and of every validation run."""

    Config = CharConfig
    data_kind = "text"
    logged_metrics = ("val/acc", "test/acc")

    def __init__(self, cfg: CharConfig, vocab_size: int, data_shape: str = "windows", cs: int = 8, bptt: int = 8):
        super().__init__(cfg, vocab_size=vocab_size, data_shape=data_shape, cs=cs, bptt=bptt)
        for key, data_value in (("cs", cs), ("bptt", bptt)):
            if getattr(cfg, key) != data_value:
                raise ConfigError(
                    f"model.{key}={getattr(cfg, key)} but the data is cut for {key}={data_value} "
                    f"(data.{key}); set model.{key} alone: the data config follows it"
                )
        if data_shape != ARCH_SHAPE[cfg.arch]:
            raise ConfigError(
                f"model.arch={cfg.arch} trains on data.shape={ARCH_SHAPE[cfg.arch]}, got data.shape={data_shape}"
            )
        if cfg.arch == "char3":
            self.net = Char3(vocab_size, cfg.n_fac, cfg.n_hidden)
        elif cfg.arch in ("char_loop", "char_loop_concat"):
            self.net = CharLoop(vocab_size, cfg.n_fac, cfg.n_hidden, concat=cfg.arch == "char_loop_concat")
        elif cfg.arch in ("char_rnn", "char_seq_rnn"):
            self.net = CharRnn(vocab_size, cfg.n_fac, cfg.n_hidden, seq=cfg.arch == "char_seq_rnn")
        else:
            self.net = CharStateful(
                vocab_size,
                cfg.n_fac,
                cfg.n_hidden,
                cfg.cell,
                cfg.n_layers,
                cfg.dropout,
                cfg.emb_drop,
                cfg.out_drop,
                cfg.weight_drop,
            )
        if cfg.identity_init:
            init_identity(self.net.rnn)
        self.stateful = cfg.arch == "stateful"
        self.hidden: dict[str, object] = {}  # stage -> hidden state carried between batches
        # torch.compile for training steps (fixed shapes); generation stays eager. Kept out of the module
        # tree, so checkpoints hold the plain weights either way.
        self.__dict__["train_net"] = torch.compile(self.net) if cfg.compile else self.net

    def _forward(self, x: Tensor, stage: str) -> Tensor:
        """(B, T) -> (B, V), or (T, B, V) for a prediction at every step."""
        if not self.stateful:
            return self.train_net(x)
        h = self.hidden.get(stage)
        if h is None or (h[0] if isinstance(h, tuple) else h).shape[1] != x.shape[0]:
            h = self.net.init_hidden(x.shape[0], x.device)
        out, h = self.train_net(x, h)
        self.hidden[stage] = detach_hidden(h)
        return out

    @staticmethod
    def _loss(out: Tensor, y: Tensor) -> Tensor:
        return nll_loss_seq(out, y) if out.dim() == 3 else F.nll_loss(out, y)

    def train_loss(self, batch) -> Tensor:
        x, y = batch  # (B, T), (B,) or (B, T)
        return self._loss(self._forward(x, "train"), y)

    def log_train_loss(self, loss: Tensor, n_targets: int) -> None:
        # batch_size = characters predicted: epoch means are per character even when the last chunk is shorter
        self.log("train/loss", loss, prog_bar=True, batch_size=n_targets, on_step=True, on_epoch=True)

    def _eval_step(self, batch, stage: str) -> None:
        x, y = batch
        out = self._forward(x, stage)
        self.log(f"{stage}/loss", self._loss(out, y), prog_bar=True, batch_size=y.numel(), on_epoch=True)
        # accuracy is a validation figure: in training its argmax cost ~4% of a step
        acc = (out.argmax(-1) == (y.t() if out.dim() == 3 else y)).float().mean()
        self.log(f"{stage}/acc", acc, batch_size=y.numel(), on_step=False, on_epoch=True)

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, "test")

    def on_train_epoch_start(self) -> None:
        self.hidden.clear()

    def on_validation_epoch_start(self) -> None:
        self.hidden.pop("val", None)

    def on_test_epoch_start(self) -> None:
        self.hidden.pop("test", None)

    @torch.no_grad()
    def next_log_probs(self, ids: Tensor, state=None) -> tuple[Tensor, object]:
        """Log-probabilities (V,) of the character after `ids` (T,), and the state to pass next time.
        Stateless models read the last cs characters (char3: left-padded with the padding id); stateful
        models read all of `ids` when state is None, else only the newest character."""
        if self.stateful:
            state, x = (self.net.init_hidden(1, ids.device), ids) if state is None else (state, ids[-1:])
            out, state = self.net(x[None], state)  # (T, 1, V)
            return out[-1, 0], state
        x = ids[-self.cfg.cs :]
        if self.cfg.arch == "char3" and len(x) < 3:
            x = torch.cat([x.new_zeros(3 - len(x)), x])
        out = self.net(x[None])  # (1, V) or (T, 1, V)
        return (out[-1, 0] if out.dim() == 3 else out[0]), None
