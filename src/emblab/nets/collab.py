"""Collaborative filtering nets (fast.ai lessons 4-5): a dot product of embeddings, and its neural variant.
Shapes: B batch, F factors."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from emblab.nets import scaled_sigmoid


def embedding(n: int, dim: int) -> nn.Embedding:
    e = nn.Embedding(n, dim)
    nn.init.trunc_normal_(e.weight, std=0.01, a=-0.02, b=0.02)  # fastai's init: small, so sigmoid starts mid-range
    return e


class EmbeddingDotBias(nn.Module):
    """rating = sigmoid(u·i + u_bias + i_bias) scaled to y_range.

    With side tables (n_user_codes, n_item_feats), a user's vector and bias add those of its codes
    (gender, age band, occupation) and an item's the weighted sum of its features' (genre shares,
    release decade): a rarely rated id leans on the ones like it."""

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
        if n_user_codes:  # filled from the data when fitting starts; saved, so a checkpoint predicts alone
            self.register_buffer("user_codes", torch.zeros(n_users, n_user_fields, dtype=torch.long))
            self.uc_weight, self.uc_bias = embedding(n_user_codes, n_factors), embedding(n_user_codes, 1)
            self.side_tables += [self.uc_weight, self.uc_bias]
        if n_item_feats:
            self.register_buffer("item_feats", torch.zeros(n_items, n_item_feats))
            self.if_weight, self.if_bias = embedding(n_item_feats, n_factors), embedding(n_item_feats, 1)
            self.side_tables += [self.if_weight, self.if_bias]

    def gather(self, users: Tensor, items: Tensor):  # (B,), (B,) -> ((B, F), (B, 1)) per side: the ids' own rows
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
        return scaled_sigmoid((u * i).sum(1) + u_b.squeeze(1) + i_b.squeeze(1), self.y_range)

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
        for n_in, n_out, p in zip(sizes[:-1], sizes[1:], dropout, strict=True):
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
