"""Predictions and recommendations from a collab checkpoint, on the CPU. Ids are the raw ids of the
data files (MovieLens userId / movieId).

    python -m emblab.predict ckpt_path=... user=196 item=242     # one predicted rating
    python -m emblab.predict ckpt_path=... user=196 k=10         # top-10 unseen items for user 196
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from emblab import cli
from emblab.errors import EmblabError, check_range


class Recommender:
    def __init__(self, model, artifacts: dict):
        self.model, self.a = model.eval(), artifacts
        self.user_index = {int(u): i for i, u in enumerate(artifacts["user_ids"].tolist())}
        self.item_index = {int(m): i for i, m in enumerate(artifacts["item_ids"].tolist())}

    @classmethod
    def from_checkpoint(cls, path) -> "Recommender":
        from emblab.checkpoint import load_model

        model, ckpt = load_model(path)
        if ckpt["emblab"]["data_kind"] != "ratings":
            raise EmblabError(f"{path} is a {ckpt['emblab']['data_kind']} model, not a collab model")
        return cls(model, ckpt["emblab"]["data"])

    def _user(self, user: int) -> int:
        if user not in self.user_index:
            raise EmblabError(f"unknown user {user}: the model knows {len(self.user_index)} users "
                              f"(ids {min(self.user_index)}..{max(self.user_index)})")
        return self.user_index[user]

    def _item(self, item: int) -> int:
        if item not in self.item_index:
            raise EmblabError(f"unknown item {item}: the model knows {len(self.item_index)} items")
        return self.item_index[item]

    @torch.no_grad()
    def predict(self, user: int, item: int) -> float:
        u, i = torch.tensor([self._user(user)]), torch.tensor([self._item(item)])
        return float(self.model(u, i)[0])

    @torch.no_grad()
    def recommend(self, user: int, k: int = 10) -> list[tuple[int, str, float]]:
        """The k items with the highest predicted rating among those the user has not rated."""
        u = self._user(user)
        n_items = len(self.a["item_ids"])
        scores = self.model(torch.full((n_items,), u), torch.arange(n_items))  # (n_items,)
        lo, hi = int(self.a["seen_indptr"][u]), int(self.a["seen_indptr"][u + 1])
        scores[self.a["seen_items"][lo:hi].long()] = -torch.inf
        top = torch.topk(scores, min(k, n_items - (hi - lo))).indices.tolist()
        return [(int(self.a["item_ids"][i]), self.a["item_titles"][i], float(scores[i])) for i in top]


@dataclass
class Args:
    ckpt_path: str = "???"
    user: int = "???"  # type: ignore[assignment]
    item: int | None = None
    k: int | None = None  # default 10 (recommendations); not with item


def run(args: Args) -> None:
    if args.item is not None and args.k is not None:
        raise EmblabError("give item=ID (one predicted rating) or k=N (top-N recommendations), not both")
    k = 10 if args.k is None else args.k
    check_range("k", k, lo=1, integer=True)
    rec = Recommender.from_checkpoint(args.ckpt_path)
    if args.item is not None:
        print(f"user {args.user}, item {args.item} ({rec.a['item_titles'][rec._item(args.item)]}): "
              f"predicted rating {rec.predict(args.user, args.item):.2f}")
        return
    print(f"top {k} unseen items for user {args.user}:")
    for item, title, score in rec.recommend(args.user, k):
        print(f"  {score:.2f}  {item:>7}  {title}")


if __name__ == "__main__":
    cli.main(Args, run)
