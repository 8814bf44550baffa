"""Predictions and recommendations from a trained collab model, rating or ranking (emblab.predict). Ids are the
raw ids of the data file, integers or text as the model learned them; a file's columns are `user` and `item`
(or the names the data config gave, or MovieLens's userId and movieId). Scoring is batched over users, every
item at once: no Python per pair."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from emblab.core.errors import DataError, EmblabError

ID_COLUMNS = {"user": ("user", "userId"), "item": ("item", "movieId")}


class IdMap:
    """Raw ids <-> model indices: an int64 tensor of sorted integer ids, or a sorted list of text ids."""

    def __init__(self, ids):
        self.text = not isinstance(ids, Tensor)
        self.ids = np.asarray(ids, dtype=object) if self.text else ids.long().numpy()
        self.index = pd.Index(self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    def lookup(self, raw) -> tuple[Tensor, Tensor]:
        """Raw ids (N,), as given (text from a file or the command line) -> (indices (N,), known (N,) bool)."""
        values = pd.Series(np.asarray(raw, dtype=object)).astype(str).str.strip()
        if not self.text:
            values = pd.to_numeric(values.where(values.str.fullmatch(r"0|-?[1-9]\d{0,17}")), errors="coerce")
        pos = self.index.get_indexer(values)
        return torch.from_numpy(np.maximum(pos, 0)), torch.from_numpy(pos >= 0)


class Recommender:
    def __init__(self, model, artifacts: dict):
        self.model, self.a = model.eval(), artifacts
        self.users, self.items = IdMap(artifacts["user_ids"]), IdMap(artifacts["item_ids"])
        self.ranking = getattr(model, "data_kind", "ratings") == "interactions"

    def _one(self, raw, kind: str) -> int:
        ids = self.users if kind == "user" else self.items
        idx, known = ids.lookup([raw])
        if not bool(known[0]):
            hint = "; fallback=popular recommends the popular items instead" if kind == "user" else ""
            raise EmblabError(f"unknown {kind} {raw}: the model knows {len(ids)} {kind}s{hint}")
        return int(idx[0])

    @torch.no_grad()
    def predict(self, user, item) -> float:
        u, i = torch.tensor([self._one(user, "user")]), torch.tensor([self._one(item, "item")])
        return float(self.predict_pairs(u, i)[0])

    @torch.no_grad()
    def predict_pairs(self, users: Tensor, items: Tensor, chunk: int = 1 << 20) -> Tensor:
        """A rating model's predicted ratings (a ranking model's scores) of index pairs (N,), (N,) -> (N,)."""
        parts = [
            self.model.score_pairs(users[s : s + chunk], items[s : s + chunk]) for s in range(0, len(users), chunk)
        ]
        return torch.cat(parts) if parts else torch.zeros(0)

    @torch.no_grad()
    def top_k(self, users: Tensor, k: int, chunk: int = 256) -> tuple[Tensor, Tensor]:
        """The k best unseen items of each user index (U,) -> (items (U, k), scores (U, k)); a user with fewer than
        k unseen items gets -inf in the tail."""
        from emblab.data.rows import gather

        indptr, seen = self.a["seen_indptr"].long(), self.a["seen_items"].long()
        k = min(k, len(self.items))
        out_i, out_s = [], []
        for s in range(0, len(users), chunk):
            u = users[s : s + chunk]  # (C,)
            scores = self.model.score_items(u).float()  # (C, n_items)
            rows, pos = gather(indptr, seen, u)
            scores[rows, seen[pos]] = -torch.inf  # never what the user has already
            top = torch.topk(scores, k, dim=1)
            out_i.append(top.indices)
            out_s.append(top.values)
        return torch.cat(out_i), torch.cat(out_s)

    @torch.no_grad()
    def popular(self, k: int, min_count: int = 20) -> tuple[Tensor, Tensor]:
        """The cold-start list: among items with at least min_count training-or-validation rows, those a typical
        (zero-embedding) user scores highest: the learned bias through the model's output (the dot product),
        the mean over users (the neural variant), the interaction count (a ranker without bias)."""
        counts = self.a["item_counts"].long()
        enough = counts >= min(min_count, int(counts.max()))
        score = self.model.cold_start_scores(counts.float())
        score = torch.where(enough, score, torch.tensor(-torch.inf))
        top = torch.topk(score, min(k, int(enough.sum())))
        return top.indices, top.values

    def recommend(self, user, k: int = 10, fallback: str | None = None) -> list[tuple[object, str, float, bool]]:
        """The k best items the user has not had: (item id, title, score, is_fallback)."""
        idx, known = self.users.lookup([user])
        if not bool(known[0]) and fallback == "popular":
            items, scores, cold = *self.popular(k), True
        else:
            items, scores = self.top_k(torch.tensor([self._one(user, "user")]), k)
            keep = torch.isfinite(scores[0])
            items, scores, cold = items[0][keep], scores[0][keep], False
        titles = self.a["item_titles"]
        return [(self.items.ids[i], titles[i], float(s), cold) for i, s in zip(items.tolist(), scores, strict=True)]


# ---------------------------------------------------------------- files in, files out
def read_ids(path: str | Path, kinds: tuple[str, ...], names: dict[str, str] | None = None) -> pd.DataFrame:
    """The id columns of a CSV or Parquet file, as text (exactly as written), named by kind (user, item)."""
    from emblab.data.tabular import read_table

    path = Path(path)
    df = read_table(path, dtype=str)
    out = {}
    for kind in kinds:
        choices = ((names or {}).get(kind), *ID_COLUMNS[kind])
        col = next((c for c in choices if c and c in df.columns), None)
        if col is None:
            raise DataError(
                path, f"no {' or '.join(c for c in choices if c)} column; the file has {list(df.columns)}", line=1
            )
        blank = df[col].isna() | (df[col].astype(str).str.strip() == "")
        if blank.any():
            raise DataError(path, f"a blank {kind} id", line=int(np.flatnonzero(blank.to_numpy())[0]) + 2, column=col)
        out[kind] = df[col].astype(str).str.strip()
    return pd.DataFrame(out)


def first_unknown(path, raw: pd.Series, known: Tensor, kind: str, n: int) -> None:
    if bool(known.all()):
        return
    row = int(torch.nonzero(~known)[0])
    hint = "; fallback=popular recommends popular items to unknown users" if kind == "user" else ""
    raise DataError(
        path,
        f"unknown {kind} {raw.iloc[row]} ({int((~known).sum())} rows name ids the model never "
        f"saw; it knows {n} {kind}s){hint}",
        line=row + 2,
        column=kind,
    )


def write_table(df: pd.DataFrame, out: str | Path) -> Path:
    out = Path(out)
    if out.suffix.lower() not in (".parquet", ".pq", ".csv"):
        raise EmblabError(f"out={out}: expected a .csv or .parquet file name")
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".csv":
        df.to_csv(out, index=False, float_format="%.4f")
    else:
        df.to_parquet(out, index=False)
    return out


def predict_file(rec: Recommender, pairs: str, out: str) -> Path:
    df = read_ids(pairs, ("user", "item"))
    u, u_known = rec.users.lookup(df["user"])
    i, i_known = rec.items.lookup(df["item"])
    first_unknown(pairs, df["user"], u_known, "user", len(rec.users))
    first_unknown(pairs, df["item"], i_known, "item", len(rec.items))
    frame = pd.DataFrame({"user": rec.users.ids[u.numpy()], "item": rec.items.ids[i.numpy()]})
    frame["score" if rec.ranking else "prediction"] = rec.predict_pairs(u, i).numpy()
    return write_table(frame, out)


def recommend_file(rec: Recommender, users: str, k: int, out: str, fallback: str | None) -> Path:
    if users == "all":
        idx, known, raw = torch.arange(len(rec.users)), torch.ones(len(rec.users), dtype=torch.bool), rec.users.ids
    else:
        given = read_ids(users, ("user",))["user"].drop_duplicates().reset_index(drop=True)
        idx, known = rec.users.lookup(given)
        if fallback != "popular":
            first_unknown(users, given, known, "user", len(rec.users))
        raw = np.where(known.numpy(), rec.users.ids[idx.numpy()], given.to_numpy(dtype=object))
    items, scores = rec.top_k(idx[known], k)  # (U, k)
    width = items.shape[1]
    frames = [
        pd.DataFrame(
            {
                "user": np.repeat(raw[known.numpy()], width),
                "rank": np.tile(np.arange(1, width + 1), int(known.sum())),
                "item": items.reshape(-1).numpy(),
                "score": scores.reshape(-1).numpy(),
                "fallback": False,
            }
        )
    ]
    if (~known).any():  # fallback=popular: the same cold-start list for every unknown user, flagged
        p_items, p_scores = rec.popular(k)
        cold = raw[(~known).numpy()]
        n = len(p_items)
        frames.append(
            pd.DataFrame(
                {
                    "user": np.repeat(cold, n),
                    "rank": np.tile(np.arange(1, n + 1), len(cold)),
                    "item": np.tile(p_items.numpy(), len(cold)),
                    "score": np.tile(p_scores.numpy(), len(cold)),
                    "fallback": True,
                }
            )
        )
    frame = pd.concat(frames, ignore_index=True)
    frame = frame[np.isfinite(frame["score"])].reset_index(drop=True)
    frame.insert(3, "title", np.asarray(rec.a["item_titles"], dtype=object)[frame["item"].to_numpy()])
    frame["item"] = rec.items.ids[frame["item"].to_numpy()]
    return write_table(frame, out)
