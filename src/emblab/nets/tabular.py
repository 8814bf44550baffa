"""Mixed-input tabular nets (fast.ai lesson 3-4, Guo & Berkhahn 2016): an embedding per categorical column,
concatenated with the batch-normalised continuous columns, through linear layers.

    cats (B, n_cat) -> [emb_i(cats[:, i])] -> concat (B, sum emb_sz) -> emb_drop ─┐
    conts (B, n_cont) -> BatchNorm1d ─────────────────────────────────────────────┴> concat (B, n_in)
    -> [Linear -> ReLU -> (BatchNorm1d) -> Dropout(p)] per layer -> Linear (B, out_sz) -> (scaled sigmoid)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from emblab.nets import scaled_sigmoid


def emb_size(card: int, rule: str = "fastai1") -> int:
    """Width of the embedding for a column with `card` rows (training values + unknown)."""
    if rule == "fastai1":  # the lesson: half the cardinality, at most 50
        return min(50, (card + 1) // 2)
    return min(600, round(1.6 * card**0.56))  # fastai v2's empirical rule


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
        n_in, blocks = sum(sz for _, sz in emb_szs) + n_cont, []
        for n_out, p in zip(layers, ps, strict=True):
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
        return scaled_sigmoid(x, self.y_range) if self.y_range is not None else x
