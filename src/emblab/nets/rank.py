"""The ranking net: user and item embeddings whose dot product (plus an item bias) scores every item for a user."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class DotRanker(nn.Module):
    """score(u, i) = u·i + i_bias, for ranking: a user's scores of every item at once. Rows start at
    N(0, init_std / sqrt(F)), so first scores are about init_std² whatever F (Rendle et al. 2021)."""

    def __init__(self, n_users: int, n_items: int, n_factors: int = 128, item_bias: bool = True, init_std: float = 0.1):
        super().__init__()
        self.u_weight, self.i_weight = nn.Embedding(n_users, n_factors), nn.Embedding(n_items, n_factors)
        for e in (self.u_weight, self.i_weight):
            nn.init.normal_(e.weight, 0.0, init_std / n_factors**0.5)
        self.i_bias = nn.Parameter(torch.zeros(n_items)) if item_bias else None

    def forward(self, users: Tensor) -> Tensor:  # (U,) -> (U, n_items)
        scores = self.u_weight(users) @ self.i_weight.weight.T
        return scores if self.i_bias is None else scores + self.i_bias

    def score_pairs(self, users: Tensor, items: Tensor) -> Tensor:  # (N,), (N,) -> (N,)
        scores = (self.u_weight(users) * self.i_weight(items)).sum(1)
        return scores if self.i_bias is None else scores + self.i_bias[items]
