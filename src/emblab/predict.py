"""Predictions and recommendations from a collab checkpoint, rating or ranking model, on the CPU
(emblab.analysis.recommend). Ids are the raw ids of the data file (MovieLens: userId / movieId).

    python -m emblab.predict ckpt_path=... user=196 item=242          # one predicted rating
    python -m emblab.predict ckpt_path=... user=196 k=10              # top-10 unseen items for user 196
    python -m emblab.predict ckpt_path=... pairs=FILE out=preds.csv   # every (user, item) of a CSV/Parquet
    python -m emblab.predict ckpt_path=... users=FILE|all k=10 out=recs.parquet   # top-k for many users
    ... fallback=popular    # an unknown user gets the best-liked popular items, flagged, not an error
    python -m emblab.predict ckpt_path=TABULAR.ckpt table=new.csv out=preds.csv   # a tabular model on new rows
"""

from __future__ import annotations

from dataclasses import dataclass

from emblab.analysis.recommend import Recommender, predict_file, recommend_file
from emblab.core import cli
from emblab.core.errors import EmblabError
from emblab.core.settings import setting
from emblab.training.loading import load_model


def load_recommender(path) -> Recommender:
    model, ckpt = load_model(path, expect_kind=("ratings", "interactions"))
    return Recommender(model, ckpt["emblab"]["data"])


@dataclass
class Args:
    ckpt_path: str = "???"
    user: str | None = None  # a raw id, as in the data file
    item: str | None = None
    k: int | None = setting(None, ge=1)  # default 10 (recommendations); not with item
    pairs: str | None = None  # CSV/Parquet of (user, item): predict each
    users: str | None = None  # CSV/Parquet with a user column, or `all`: top-k for each
    table: str | None = None  # a tabular model: CSV/Parquet of new rows, predicted each (emblab.analysis.tables)
    out: str | None = None  # where pairs / users / table write (.csv or .parquet)
    fallback: str | None = setting(None, choices=("popular",))  # unknown users get the cold-start list, flagged


def run(args: Args) -> None:
    if args.table is not None:
        if args.user is not None or args.pairs or args.users or not args.out:
            raise EmblabError("table=FILE predicts a tabular model's rows into out=FILE.csv|.parquet, alone")
        from emblab.analysis.tables import predict_table

        model, ckpt = load_model(args.ckpt_path, expect_kind="tabular")
        print(f"wrote {predict_table(model, ckpt['emblab']['data'], args.table, args.out)}")
        return
    modes = [
        name for name, on in (("user=", args.user is not None), ("pairs=", args.pairs), ("users=", args.users)) if on
    ]
    if len(modes) != 1:
        raise EmblabError(
            "give one of user=ID, pairs=FILE, users=FILE|all (a collab model) or table=FILE (a tabular one)"
            + (f", not {' and '.join(modes)}" if modes else "")
        )
    if args.item is not None and (args.k is not None or args.user is None):
        raise EmblabError("give item=ID (one predicted rating, with user=ID) or k=N (top-N recommendations), not both")
    k = 10 if args.k is None else args.k
    if (args.pairs or args.users) and not args.out:
        raise EmblabError(f"{modes[0]}... writes a file: give out=FILE.csv or out=FILE.parquet")
    rec = load_recommender(args.ckpt_path)
    if args.pairs:
        print(f"wrote {predict_file(rec, args.pairs, args.out)}")
    elif args.users:
        print(f"wrote {recommend_file(rec, args.users, k, args.out, args.fallback)}")
    elif args.item is not None:
        what = "score" if rec.ranking else "predicted rating"
        title = rec.a["item_titles"][rec._one(args.item, "item")]
        print(f"user {args.user}, item {args.item} ({title}): {what} {rec.predict(args.user, args.item):.2f}")
    else:
        recs = rec.recommend(args.user, k, args.fallback)
        fallback = recs and recs[0][3]
        print(
            f"top {k} unseen items for user {args.user}"
            + (" (unknown user: the popular fallback, best-liked items with >= 20 ratings):" if fallback else ":")
        )
        for item, title, score, _ in recs:
            print(f"  {score:.2f}  {item!s:>10}  {title}")


if __name__ == "__main__":
    cli.main(Args, run)
