"""Mixed-input tabular nets (fast.ai lesson 3-4, Guo & Berkhahn 2016): an embedding per categorical column,
concatenated with the batch-normalised continuous columns, through linear layers.

    cats (B, n_cat) -> [emb_i(cats[:, i])] -> concat (B, sum emb_sz) -> emb_drop ─┐
    conts (B, n_cont) -> BatchNorm1d | PeriodicEmbeddings ───────────────────────────┴> concat (B, n_in)
    -> [Linear -> ReLU -> (BatchNorm1d) -> Dropout(p)] per layer -> Linear (B, out_sz) -> (scaled sigmoid)

num_emb="periodic" embeds each continuous column too (Gorishniy et al. 2022, "On embeddings for numerical
features in tabular deep learning", PLR): what entity embeddings do for categories, for numbers; "piecewise"
(PLE, the same paper) by the column's place among its quantile bins, closer to how a tree splits a number.
n_members > 1 makes it an ensemble in one net (TabM-mini, Gorishniy et al. 2024): k members share the layers,
each sees the input scaled by its own vector (random signs at init) and has its own output layer; each is
trained as a net of its own and their mean is the prediction. (B, n_in) -> (B, k, n_in) -> ... -> (B, k, out_sz)
In training each member may see rows of its own (TabM's batches not shared: more diverse members): inputs
(B, k, n_cat), (B, k, n_cont), column j member j's rows.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import ndtri
from torch import Tensor, nn

from emblab.nets import scaled_sigmoid


def emb_size(card: int, rule: str = "fastai1") -> int:
    """Width of the embedding for a column with `card` rows (training values + unknown)."""
    if rule == "fastai1":  # the lesson: half the cardinality, at most 50
        return min(50, (card + 1) // 2)
    return min(600, round(1.6 * card**0.56))  # fastai v2's empirical rule


class PeriodicEmbeddings(nn.Module):
    """PLR: x_j -> ReLU(W_j [cos 2π c_j x_j, sin 2π c_j x_j] + b_j), per column j, trainable frequencies c_j.
    The k frequencies' init scales span scale..scale_max log-evenly: the smallest start as almost linear
    functions of x (nothing to overfit in the first epochs), the largest can resolve thresholds."""

    def __init__(self, n_cont: int, k: int, d: int, scale: float, scale_max: float):
        super().__init__()
        sigma = torch.logspace(math.log10(scale), math.log10(scale_max), k)  # (k,)
        self.freq = nn.Parameter(torch.randn(n_cont, k) * sigma)  # (n_cont, k)
        bound = 1 / math.sqrt(2 * k)  # nn.Linear's init, one linear map per column
        self.weight = nn.Parameter(torch.empty(n_cont, 2 * k, d).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_cont, d).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:  # (B, n_cont) -> (B, n_cont * d)
        v = 2 * math.pi * self.freq * x[..., None]  # (B, n_cont, k)
        v = torch.cat([torch.cos(v), torch.sin(v)], -1)  # (B, n_cont, 2k)
        return F.relu(torch.einsum("bfk,fkd->bfd", v, self.weight) + self.bias).flatten(1)


class PiecewiseEmbeddings(nn.Module):
    """PLE (Gorishniy et al. 2022) as TabM uses it (version B of rtdl_num_embeddings, whose module computes from
    its bins when built, which a net built on the meta device to count its size cannot):
    x_j -> x_j w_j + b_j + V_j ple(x_j), V_j starting at zero, so training starts from a linear embedding.
    ple(x) (n_bins,): 1 for each bin below x, x's place in its own bin, 0 above (the outer bins unclamped).
    The bins are the standard normal's quantiles: with num_transform=quantile the columns are on that normal by
    their training quantiles, so these are the training quantiles' bins (ties aside)."""

    def __init__(self, n_cont: int, n_bins: int, d: int):
        super().__init__()
        edges = torch.tensor(ndtri(np.clip(np.linspace(0, 1, n_bins + 1), 1e-7, 1 - 1e-7)), dtype=torch.float32)
        self.register_buffer("left", edges[:-1].clone(), persistent=False)  # (n_bins,)
        self.register_buffer("width", edges[1:] - edges[:-1], persistent=False)  # (n_bins,)
        lo, hi = torch.zeros(n_bins), torch.ones(n_bins)  # each bin's share in [0, 1], the outer bins open
        lo[0], hi[-1] = -math.inf, math.inf
        self.register_buffer("lo", lo, persistent=False)
        self.register_buffer("hi", hi, persistent=False)
        bound = 1 / math.sqrt(d)  # rtdl_num_embeddings.LinearEmbeddings init
        self.weight = nn.Parameter(torch.empty(n_cont, d).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_cont, d).uniform_(-bound, bound))
        self.ple_weight = nn.Parameter(torch.zeros(n_cont, n_bins, d))

    def forward(self, x: Tensor) -> Tensor:  # (B, n_cont) -> (B, n_cont * d)
        t = (x[..., None] - self.left) / self.width  # (B, n_cont, n_bins)
        t = torch.clamp(t, self.lo, self.hi)  # 1 below x, its place in its own bin, 0 above
        out = x[..., None] * self.weight + self.bias + torch.einsum("bfk,fkd->bfd", t, self.ple_weight)
        return out.flatten(1)


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
        num_emb: dict | None = None,
        n_members: int = 1,
    ):
        super().__init__()
        self.embs = nn.ModuleList([nn.Embedding(card, sz) for card, sz in emb_szs])
        for e in self.embs:  # the lesson's emb_init: small uniform, wider for narrow embeddings
            sc = 2 / (e.embedding_dim + 1)
            nn.init.uniform_(e.weight, -sc, sc)
        self.emb_drop = nn.Dropout(emb_drop)
        # num_emb: {"kind": periodic | piecewise, "d": width, PLR's k, scale, scale_max or PLE's n_bins}; None: the
        # lesson's BatchNorm1d of the columns
        self.num_emb = None
        if n_cont and num_emb:
            kind, kw = num_emb["kind"], {k: v for k, v in num_emb.items() if k != "kind"}
            self.num_emb = (PiecewiseEmbeddings if kind == "piecewise" else PeriodicEmbeddings)(n_cont, **kw)
        self.bn_cont = nn.BatchNorm1d(n_cont) if n_cont and not num_emb else None
        n_num = n_cont * num_emb["d"] if self.num_emb is not None else n_cont
        n_in, blocks = sum(sz for _, sz in emb_szs) + n_num, []
        for n_out, p in zip(layers, ps, strict=True):
            lin = nn.Linear(n_in, n_out)
            nn.init.kaiming_normal_(lin.weight, nonlinearity="relu")  # keeps activations' scale through ReLUs
            blocks += [lin, nn.ReLU()] + ([nn.BatchNorm1d(n_out)] if use_bn else []) + [nn.Dropout(p)]
            n_in = n_out
        self.layers = nn.Sequential(*blocks)
        self.out = nn.Linear(n_in, out_sz)
        nn.init.kaiming_normal_(self.out.weight)
        self.n_members = n_members
        if n_members > 1:
            n_x = self.layers[0].in_features if layers else n_in
            self.member_scale = nn.Parameter(torch.randint(0, 2, (n_members, n_x)).float() * 2 - 1)  # (k, n_x)
            w = torch.stack([nn.init.kaiming_normal_(torch.empty(out_sz, n_in)).T for _ in range(n_members)])
            self.member_out = nn.Parameter(w)  # (k, n_in, out_sz): one output layer per member
            self.member_bias = nn.Parameter(self.out.bias.detach().repeat(n_members, 1))  # (k, out_sz)
            del self.out
        self.y_range = tuple(y_range) if y_range is not None else None

    def forward(self, cats: Tensor, conts: Tensor) -> Tensor:
        """(B, n_cat) int64, (B, n_cont) -> (B, out_sz), or (B, k, out_sz) with k = n_members > 1; members' own
        rows (B, k, n_cat), (B, k, n_cont) -> (B, k, out_sz)."""
        lead = cats.shape[:-1]  # (B,) or (B, k)
        cats, conts = cats.flatten(0, -2), conts.flatten(0, -2)  # (N, n_cat), (N, n_cont); N = B or B * k
        parts = []
        if len(self.embs):
            x = torch.cat([e(cats[:, i]) for i, e in enumerate(self.embs)], dim=1)  # (B, sum emb_sz)
            parts.append(self.emb_drop(x))
        if self.bn_cont is not None:
            parts.append(self.bn_cont(conts))  # (B, n_cont)
        if self.num_emb is not None:
            parts.append(self.num_emb(conts))  # (B, n_cont * d)
        x = torch.cat(parts, dim=1).view(*lead, -1)  # (B, n_x) or (B, k, n_x)
        if self.n_members > 1:
            h = self.layers((x if x.dim() == 3 else x[:, None, :]) * self.member_scale)  # (B, k, n_hidden)
            x = torch.einsum("bkh,kho->bko", h, self.member_out) + self.member_bias  # (B, k, out_sz)
        else:
            x = self.out(self.layers(x))  # (B, out_sz)
        return scaled_sigmoid(x, self.y_range) if self.y_range is not None else x
