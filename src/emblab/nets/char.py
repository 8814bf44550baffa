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
