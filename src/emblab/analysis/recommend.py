"""Predictions and recommendations from a trained collab model (emblab.predict). Ids are the raw ids of the
data files (MovieLens userId / movieId).

A file's columns are `user` and `item`, or MovieLens's `userId` and `movieId`. Output is CSV or Parquet
by the `out` suffix. Scoring is batched over users: the whole item table at once, no per-pair Python.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from emblab.core.errors import DataError, EmblabError
from emblab.nets import scaled_sigmoid

ID_COLUMNS = {"user": ("user", "userId"), "item": ("item", "movieId")}


class Recommender:
    def __init__(self, model, artifacts: dict):
        self.model, self.a = model.eval(), artifacts
        self.user_ids = artifacts["user_ids"].long()  # sorted (np.unique), so searchsorted maps raw ids
        self.item_ids = artifacts["item_ids"].long()
        self.user_index = {int(u): i for i, u in enumerate(self.user_ids.tolist())}
        self.item_index = {int(m): i for i, m in enumerate(self.item_ids.tolist())}

    def _user(self, user: int) -> int:
        if user not in self.user_index:
            raise EmblabError(
                f"unknown user {user}: the model knows {len(self.user_index)} users "
                f"(ids {min(self.user_index)}..{max(self.user_index)}); fallback=popular recommends "
                "the best-liked popular items instead"
            )
        return self.user_index[user]

    def _item(self, item: int) -> int:
        if item not in self.item_index:
            raise EmblabError(f"unknown item {item}: the model knows {len(self.item_index)} items")
        return self.item_index[item]

    def indices(self, raw: np.ndarray, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw ids (N,) -> (indices (N,), known (N,) bool), vectorised."""
        table = self.user_ids if kind == "user" else self.item_ids
        raw_t = torch.as_tensor(np.asarray(raw, dtype=np.int64))
        pos = torch.searchsorted(table, raw_t).clamp(max=len(table) - 1)
        return pos, table[pos] == raw_t

    @torch.no_grad()
    def predict(self, user: int, item: int) -> float:
        u, i = torch.tensor([self._user(user)]), torch.tensor([self._item(item)])
        return float(self.model(u, i)[0])

    @torch.no_grad()
    def predict_pairs(self, users: torch.Tensor, items: torch.Tensor, chunk: int = 1 << 20) -> torch.Tensor:
        """Predicted ratings for index pairs (N,), (N,) -> (N,)."""
        return torch.cat(
            [self.model(users[s : s + chunk], items[s : s + chunk]) for s in range(0, len(users), chunk)]
            or [torch.zeros(0)]
        )

    @torch.no_grad()
    def top_k(self, users: torch.Tensor, k: int, chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        """The k best unseen items for each user index (U,) -> (items (U, k), scores (U, k)); a user with fewer
        than k unseen items gets -inf scores in the tail."""
        n_items = len(self.item_ids)
        indptr, seen = self.a["seen_indptr"].long(), self.a["seen_items"].long()
        k = min(k, n_items)
        out_i, out_s = [], []
        for s in range(0, len(users), chunk):
            u = users[s : s + chunk]  # (C,)
            scores = self.model(u.repeat_interleave(n_items), torch.arange(n_items).repeat(len(u))).view(len(u), -1)
            lo, counts = indptr[u], indptr[u + 1] - indptr[u]  # user j's seen items: seen[lo[j] : lo[j] + counts[j]]
            rows = torch.repeat_interleave(torch.arange(len(u)), counts)  # (S,) the chunk row of each seen pair
            starts = torch.cumsum(counts, 0) - counts  # where user j's pairs begin among the S
            cols = seen[lo[rows] + torch.arange(len(rows)) - starts[rows]]  # (S,)
            scores[rows, cols] = -torch.inf
            top = torch.topk(scores, k, dim=1)
            out_i.append(top.indices)
            out_s.append(top.values)
        return torch.cat(out_i), torch.cat(out_s)

    def popular(self, k: int, min_count: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
        """The cold-start list: items with at least min_count training-or-validation ratings, ranked by
        their learned bias (how much better they are liked than their raters' and the global average),
        with the rating a typical (zero-embedding) user would be predicted to give."""
        net = self.model.net
        counts = self.a["item_counts"].long()
        enough = counts >= min(min_count, int(counts.max()))
        if hasattr(net, "item_rows"):  # dot product: bias through the same scaled sigmoid, user terms at zero
            with torch.no_grad():
                bias = net.item_rows()[1]
            score = scaled_sigmoid(bias, net.y_range)
        else:  # EmbeddingNN has no bias: the mean predicted rating over the users
            with torch.no_grad():
                n_u, n_i = len(self.user_ids), len(self.item_ids)
                score = self.predict_pairs(torch.arange(n_u).repeat(n_i), torch.arange(n_i).repeat_interleave(n_u))
                score = score.view(n_i, n_u).mean(1)
        score = torch.where(enough, score, torch.tensor(-torch.inf))
        top = torch.topk(score, min(k, int(enough.sum())))
        return top.indices, top.values

    def recommend(self, user: int, k: int = 10, fallback: str | None = None) -> list[tuple[int, str, float, bool]]:
        """The k items with the highest predicted rating among those the user has not rated:
        (item id, title, score, is_fallback)."""
        if user not in self.user_index and fallback == "popular":
            items, scores = self.popular(k)
            return [
                (int(self.item_ids[i]), self.a["item_titles"][i], float(s), True)
                for i, s in zip(items, scores, strict=False)
            ]
        items, scores = self.top_k(torch.tensor([self._user(user)]), k)
        keep = torch.isfinite(scores[0])
        return [
            (int(self.item_ids[i]), self.a["item_titles"][i], float(s), False)
            for i, s in zip(items[0][keep], scores[0][keep], strict=False)
        ]


# ---------------------------------------------------------------- files in, files out
def read_ids(path: str | Path, kinds: tuple[str, ...]) -> pd.DataFrame:
    """The id columns of a CSV or Parquet file as int64 columns named by kind (user, item)."""
    from emblab.data.tabular import read_table

    path = Path(path)
    df = read_table(path)
    out = {}
    for kind in kinds:
        col = next((c for c in ID_COLUMNS[kind] if c in df.columns), None)
        if col is None:
            raise DataError(path, f"no {' or '.join(ID_COLUMNS[kind])} column; the file has {list(df.columns)}", line=1)
        values = pd.to_numeric(df[col], errors="coerce")
        bad = values.isna() | (values != values.round())
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(path, f"{df[col].iloc[row]!r} is not an integer id", line=row + 2, column=col)
        out[kind] = values.astype("int64")
    return pd.DataFrame(out)


def first_unknown(path, ids: pd.Series, known: torch.Tensor, kind: str, col_names: tuple[str, ...], rec) -> None:
    if bool(known.all()):
        return
    row = int(torch.nonzero(~known)[0])
    n = len(rec.user_ids if kind == "user" else rec.item_ids)
    raise DataError(
        path,
        f"unknown {kind} {int(ids.iloc[row])} ({int((~known).sum())} rows name ids the model "
        f"never saw; it knows {n} {kind}s)"
        + ("; fallback=popular recommends popular items to unknown users" if kind == "user" else ""),
        line=row + 2,
        column=col_names[0],
    )


def write_table(df: pd.DataFrame, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() in (".parquet", ".pq"):
        df.to_parquet(out, index=False)
    elif out.suffix.lower() == ".csv":
        df.to_csv(out, index=False, float_format="%.4f")
    else:
        raise EmblabError(f"out={out}: expected a .csv or .parquet file name")
    return out


def predict_file(rec: Recommender, pairs: str, out: str) -> Path:
    df = read_ids(pairs, ("user", "item"))
    u, u_known = rec.indices(df["user"].to_numpy(), "user")
    i, i_known = rec.indices(df["item"].to_numpy(), "item")
    first_unknown(pairs, df["user"], u_known, "user", ID_COLUMNS["user"], rec)
    first_unknown(pairs, df["item"], i_known, "item", ID_COLUMNS["item"], rec)
    df["prediction"] = rec.predict_pairs(u, i).numpy()
    return write_table(df, out)


def recommend_file(rec: Recommender, users: str, k: int, out: str, fallback: str | None) -> Path:
    raw = rec.user_ids.numpy() if users == "all" else read_ids(users, ("user",))["user"].drop_duplicates().to_numpy()
    idx, known = rec.indices(raw, "user")
    if fallback != "popular" and users != "all":
        first_unknown(users, pd.Series(raw), known, "user", ID_COLUMNS["user"], rec)
    items, scores = rec.top_k(idx[known], k)  # (U, k)
    n_known, width = int(known.sum()), items.shape[1]
    user_col = np.repeat(raw[known.numpy()], width)
    frame = pd.DataFrame(
        {
            "user": user_col,
            "rank": np.tile(np.arange(1, width + 1), n_known),
            "item": rec.item_ids[items.reshape(-1)].numpy(),
            "score": scores.reshape(-1).numpy(),
            "fallback": False,
        }
    )
    frame = frame[np.isfinite(frame["score"])]
    if (~known).any():  # fallback=popular: the same cold-start list for every unknown user, flagged
        p_items, p_scores = rec.popular(k)
        cold = raw[(~known).numpy()]
        frame = pd.concat(
            [
                frame,
                pd.DataFrame(
                    {
                        "user": np.repeat(cold, len(p_items)),
                        "rank": np.tile(np.arange(1, len(p_items) + 1), len(cold)),
                        "item": np.tile(rec.item_ids[p_items].numpy(), len(cold)),
                        "score": np.tile(p_scores.numpy(), len(cold)),
                        "fallback": True,
                    }
                ),
            ],
            ignore_index=True,
        )
    titles = np.asarray(rec.a["item_titles"], dtype=object)
    frame.insert(3, "title", titles[rec.indices(frame["item"].to_numpy(), "item")[0].numpy()])
    return write_table(frame.reset_index(drop=True), out)
