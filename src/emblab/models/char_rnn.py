"""Character models of fast.ai lesson 6 (and the stateful ones of lesson 7): an RNN is layers you
already know plus a for loop.

    char3             3 characters -> the 4th, the loop unrolled by hand
    char_loop         cs characters -> the next, the same layers in a for loop
    char_loop_concat  the same, concatenating input and hidden state instead of adding them
    char_rnn          nn.RNN runs the loop; its last output predicts the next character
    char_seq_rnn      nn.RNN with an output at every step, trained with the lesson's sequence NLL
    stateful          RNN / GRU / multi-layer LSTM whose hidden state runs on from batch to batch

All return log-probabilities (log_softmax) and train with F.nll_loss, as the lesson does, so
"val/loss" is the mean negative log-likelihood in nats per character.
Shapes: B batch, T = cs or bptt time steps, V vocab size, H n_hidden. Sequence models are
seq-first inside (T, B, ...) like the lesson's nn.RNN; data batches are batch-first (B, T).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from emblab.errors import ConfigError
from emblab.models.base import EmblabModule


class Char3(nn.Module):
    """Three characters -> the fourth. One embedding, one input layer, one square hidden layer, one
    output layer, each shared by all three positions; each input is added into the hidden state."""

    def __init__(self, vocab_size: int, n_fac: int, n_hidden: int):
        super().__init__()
        self.e = nn.Embedding(vocab_size, n_fac)
        self.l_in = nn.Linear(n_fac, n_hidden)
        self.l_hidden = nn.Linear(n_hidden, n_hidden)
        self.l_out = nn.Linear(n_hidden, vocab_size)

    def forward(self, x: Tensor) -> Tensor:  # (B, 3) -> (B, V)
        in1 = F.relu(self.l_in(self.e(x[:, 0])))  # (B, H)
        in2 = F.relu(self.l_in(self.e(x[:, 1])))
        in3 = F.relu(self.l_in(self.e(x[:, 2])))
        h = torch.zeros_like(in1)
        h = torch.tanh(self.l_hidden(h + in1))
        h = torch.tanh(self.l_hidden(h + in2))
        h = torch.tanh(self.l_hidden(h + in3))
        return F.log_softmax(self.l_out(h), dim=-1)


class CharLoop(nn.Module):
    """Char3 with a for loop over any number of characters. concat=True: the input layer sees
    [hidden, input] (n_hidden + n_fac -> n_hidden) instead of hidden + input."""

    def __init__(self, vocab_size: int, n_fac: int, n_hidden: int, concat: bool = False):
        super().__init__()
        self.concat, self.n_hidden = concat, n_hidden
        self.e = nn.Embedding(vocab_size, n_fac)
        self.l_in = nn.Linear(n_fac + n_hidden if concat else n_fac, n_hidden)
        self.l_hidden = nn.Linear(n_hidden, n_hidden)
        self.l_out = nn.Linear(n_hidden, vocab_size)

    def forward(self, x: Tensor) -> Tensor:  # (B, T) -> (B, V)
        h = torch.zeros(x.shape[0], self.n_hidden, device=x.device)  # (B, H)
        for c in x.unbind(1):  # c: (B,)
            if self.concat:
                inp = F.relu(self.l_in(torch.cat([h, self.e(c)], dim=1)))  # (B, H+F) -> (B, H)
                h = torch.tanh(self.l_hidden(inp))
            else:
                inp = F.relu(self.l_in(self.e(c)))
                h = torch.tanh(self.l_hidden(h + inp))
        return F.log_softmax(self.l_out(h), dim=-1)


class CharRnn(nn.Module):
    """nn.RNN does the loop. seq=False: the last output predicts the next character (B, V);
    seq=True: every output predicts the character after its input (T, B, V)."""

    def __init__(self, vocab_size: int, n_fac: int, n_hidden: int, seq: bool = False):
        super().__init__()
        self.seq = seq
        self.e = nn.Embedding(vocab_size, n_fac)
        self.rnn = nn.RNN(n_fac, n_hidden)  # seq-first, tanh
        self.l_out = nn.Linear(n_hidden, vocab_size)

    def forward(self, x: Tensor) -> Tensor:  # (B, T) -> (B, V) or (T, B, V)
        outp, _ = self.rnn(self.e(x.t()))  # zero initial state; outp (T, B, H)
        return F.log_softmax(self.l_out(outp if self.seq else outp[-1]), dim=-1)


class CharStateful(nn.Module):
    """A recurrent net whose hidden state the caller carries from batch to batch (lesson 7).
    cell: rnn | gru | lstm; n_layers stacked; dropout between layers, out_drop before the output layer
    (None: the same as dropout; the lesson had none there), emb_drop on the character embeddings going in,
    weight_drop on the hidden-to-hidden weights (DropConnect, as AWD-LSTM: one mask per batch, so every
    time step of the batch sees the same dropped connections)."""

    CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}

    def __init__(
        self,
        vocab_size: int,
        n_fac: int,
        n_hidden: int,
        cell: str = "lstm",
        n_layers: int = 1,
        dropout: float = 0.0,
        emb_drop: float = 0.0,
        out_drop: float | None = None,
        weight_drop: float = 0.0,
    ):
        super().__init__()
        self.cell, self.n_layers, self.n_hidden, self.weight_drop = cell, n_layers, n_hidden, weight_drop
        self.e = nn.Embedding(vocab_size, n_fac)
        self.emb_drop = nn.Dropout(emb_drop)
        self.rnn = self.CELLS[cell](n_fac, n_hidden, n_layers, dropout=dropout if n_layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout if out_drop is None else out_drop)
        self.l_out = nn.Linear(n_hidden, vocab_size)

    def init_hidden(self, bs: int, device=None):
        h = torch.zeros(self.n_layers, bs, self.n_hidden, device=device)  # (L, B, H)
        return (h, h.clone()) if self.cell == "lstm" else h

    def forward(self, x: Tensor, h) -> tuple[Tensor, object]:  # (B, T), hidden -> (T, B, V), hidden
        emb = self.emb_drop(self.e(x.t()))  # (T, B, F)
        if self.weight_drop and self.training:  # the rnn run with dropped copies of its weight_hh_l*
            weights = {
                name: F.dropout(w, self.weight_drop) if name.startswith("weight_hh") else w
                for name, w in self.rnn.named_parameters()
            }
            outp, h = torch.func.functional_call(self.rnn, weights, (emb, h))  # (T, B, H)
        else:
            outp, h = self.rnn(emb, h)  # (T, B, H)
        return F.log_softmax(self.l_out(self.drop(outp)), dim=-1), h


def nll_loss_seq(inp: Tensor, targ: Tensor) -> Tensor:
    """The lesson's sequence loss: predictions (T, B, V) are seq-first, targets (B, T) batch-first,
    so put the target in the prediction's layout, flatten both and take the NLL of every step."""
    sl, bs, nh = inp.size()
    targ = targ.transpose(0, 1).contiguous().view(-1)  # (T*B,)
    return F.nll_loss(inp.view(-1, nh), targ)


def init_identity(rnn: nn.RNNBase) -> None:
    """Le, Jaitly & Hinton (2015): start the hidden-to-hidden matrix as the identity, so the state
    is carried over unchanged until training says otherwise."""
    with torch.no_grad():
        rnn.weight_hh_l0.copy_(torch.eye(rnn.hidden_size))


def detach_hidden(h):
    """Keep the values, cut the graph: backprop stops at the batch boundary (truncated BPTT)."""
    return tuple(t.detach() for t in h) if isinstance(h, tuple) else h.detach()


# the data shape each architecture trains on (data.shape; see emblab.data.text)
ARCH_SHAPE = {
    "char3": "blocks",
    "char_loop": "windows",
    "char_loop_concat": "windows",
    "char_rnn": "windows",
    "char_seq_rnn": "sequences",
    "stateful": "stream",
}


class CharModel(EmblabModule):
    """Any of the architectures above as a LightningModule.

    vocab_size, data_shape, cs and bptt come from the data module. A stateful model keeps one hidden
    state per stage (train / val) on the module: detached after every batch, reset at the start of
    every training epoch and of every validation run, so validation never inherits training state.
    """

    data_kind = "text"
    logged_metrics = ("val/acc", "test/acc")

    def __init__(
        self,
        vocab_size: int,
        arch: str = "char_rnn",
        data_shape: str = "windows",
        cs: int = 8,
        bptt: int = 8,
        n_fac: int = 42,
        n_hidden: int = 256,
        cell: str = "rnn",
        n_layers: int = 1,
        dropout: float = 0.0,
        emb_drop: float = 0.0,
        out_drop: float | None = None,
        weight_drop: float = 0.0,
        identity_init: bool = False,
        compile: bool = False,
        samples: int = 2,
        sample_len: int = 200,
        sample_temperature: float = 0.8,
        optim: dict | None = None,
        steps_per_call: int = 1,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.check_hparams(
            positive=("vocab_size", "cs", "bptt", "n_fac", "n_hidden", "n_layers", "sample_len"),
            fractions=("dropout", "emb_drop", "out_drop", "weight_drop"),
        )
        if arch not in ARCH_SHAPE:
            raise ConfigError(f"model.arch={arch!r}: expected one of {', '.join(ARCH_SHAPE)}")
        if data_shape != ARCH_SHAPE[arch]:
            raise ConfigError(f"model.arch={arch} trains on data.shape={ARCH_SHAPE[arch]}, got data.shape={data_shape}")
        if arch == "char3" and cs != 3:
            raise ConfigError(f"char3 reads exactly 3 characters; got cs={cs}")
        if arch == "char3":
            self.net = Char3(vocab_size, n_fac, n_hidden)
        elif arch in ("char_loop", "char_loop_concat"):
            self.net = CharLoop(vocab_size, n_fac, n_hidden, concat=arch == "char_loop_concat")
        elif arch in ("char_rnn", "char_seq_rnn"):
            self.net = CharRnn(vocab_size, n_fac, n_hidden, seq=arch == "char_seq_rnn")
        else:
            if cell not in CharStateful.CELLS:
                raise ConfigError(f"model.cell={cell!r}: expected rnn, gru or lstm")
            self.net = CharStateful(
                vocab_size, n_fac, n_hidden, cell, n_layers, dropout, emb_drop, out_drop, weight_drop
            )
        if identity_init:
            rnn = getattr(self.net, "rnn", None)
            if not isinstance(rnn, nn.RNN):
                raise ConfigError(
                    f"model.identity_init=true needs an nn.RNN model (char_rnn, char_seq_rnn, "
                    f"stateful cell=rnn); {arch} with cell={cell} has none"
                )
            init_identity(rnn)
        self.stateful = arch == "stateful"
        if self.stateful and steps_per_call != 1:
            raise ConfigError(
                f"model.steps_per_call={steps_per_call}: a stateful model reads its stream one chunk per call; use 1"
            )
        self.set_steps_per_call(steps_per_call)
        self.hidden: dict[str, object] = {}  # stage -> hidden state carried between batches
        # torch.compile for training steps (fixed shapes); generation stays eager. Kept out of the
        # module tree, so checkpoints hold the plain weights either way.
        self.__dict__["train_net"] = torch.compile(self.net) if compile else self.net

    # -- training
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
        # batch_size = characters predicted, so epoch means are per character even when the last
        # stream chunk is shorter
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

    # -- generation
    @torch.no_grad()
    def next_log_probs(self, ids: Tensor, state=None) -> tuple[Tensor, object]:
        """Log-probabilities (V,) of the character after `ids` (T,), and the state to pass next time.

        Stateless models read the last cs characters (char3: left-padded with the padding id).
        Stateful models read all of `ids` when state is None, else only the newest character."""
        if self.stateful:
            if state is None:
                state, x = self.net.init_hidden(1, ids.device), ids
            else:
                x = ids[-1:]
            out, state = self.net(x[None], state)  # (T, 1, V)
            return out[-1, 0], state
        x = ids[-self.hparams.cs :]
        if self.hparams.arch == "char3" and len(x) < 3:
            x = torch.cat([x.new_zeros(3 - len(x)), x])
        out = self.net(x[None])  # (1, V) or (T, 1, V)
        return (out[-1, 0] if out.dim() == 3 else out[0]), None
