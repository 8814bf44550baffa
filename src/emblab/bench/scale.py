"""Collab models on generated rating sets the size of MovieLens 1M..25M: load time, epoch time, memory.

    python -m emblab.bench.scale [sizes=1M,10M,25M] [ids=int|text] [model=collab|collab_rank]
        [out=logs/bench/scale] [batch_size=4096] [threads=1] [device=cpu|cuda] [epochs=1]

Each size is written once as a MovieLens 25M-style folder (ratings.csv: userId,movieId,rating,timestamp
with half-star ratings 0.5..5; movies.csv) under data/scale/, with ML-25M's 162,541 users and 59,047
rated movies, popularity skewed like real ratings and no (user, movie) rated twice; ids=text also writes
ratings_text.csv, the same rows with 10-character text ids (U000000001, M000000001). Then a fresh process per
size runs the normal path, the interactions reader (`data=interactions data.path=<file>`): DataModule setup
(pyarrow CSV read, checks, id maps, tensors) and one training epoch through the Trainer, without validation;
it reports its seconds and its peak resident memory (ru_maxrss), so no size inherits another's memory.
model=collab_rank times the ranker's epoch instead (batch_size: users per step, every rating a positive).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emblab.bench import ROOT, choose, markdown_table, new_result, prepare, write_result
from emblab.core import cli
from emblab.core.settings import setting

N_USERS, N_ITEMS = 162_541, 59_047  # MovieLens 25M: users, and movies with at least one rating
SIZES = {"100K": 100_000, "1M": 1_000_000, "10M": 10_000_000, "25M": 25_000_000}


@dataclass
class Args:
    sizes: str = "1M,10M,25M"
    out: str = "logs/bench/scale"
    data_dir: str = str(ROOT / "data" / "scale")
    batch_size: int = 4096
    steps_per_call: int = 8
    threads: int = 1
    device: str = "cpu"  # cuda: the ratings move to the GPU once and batches are gathered there
    epochs: int = 1  # epoch_s is the mean over them (more than 1: the first epoch's warm-up is shared)
    update_md: str | None = None
    ids: str = setting("int", choices=("int", "text"))
    model: str = setting("collab", choices=("collab", "collab_rank"))
    users: int = setting(N_USERS, ge=1)  # how many users and films the ratings fall among (default: ML-25M's)
    items: int = setting(N_ITEMS, ge=1)
    one: str | None = None  # internal: measure this one size in this process and print JSON


def write_plain_csv(table, path: Path) -> None:
    """CSV as GroupLens writes it: a bare header line, no quotes (pyarrow would quote the header)."""
    import pyarrow.csv as pacsv

    with open(path, "wb") as f:
        f.write((",".join(table.column_names) + "\n").encode())
        pacsv.write_csv(table, f, pacsv.WriteOptions(include_header=False, quoting_style="none"))


def generate(n: int, folder: Path, seed: int = 0, n_users: int = N_USERS, n_items: int = N_ITEMS) -> Path:
    """A ratings.csv + movies.csv of n ratings in MovieLens 25M's format (written once, then reused), by default
    among ML-25M's numbers of users and films (n_users=6040 n_items=3706: ML-1M's)."""
    import pyarrow as pa

    done = folder / "ratings.csv"
    if done.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    # Zipf-like popularity: a few users and films have most of the ratings, as in MovieLens
    p_user = 1 / np.arange(1, n_users + 1) ** 0.6
    p_item = 1 / np.arange(1, n_items + 1) ** 0.9
    codes = np.empty(0, dtype=np.int64)
    while len(codes) < n:  # distinct (user, item) pairs
        m = int((n - len(codes)) * 1.3) + 1000
        u = rng.choice(n_users, m, p=p_user / p_user.sum())
        i = rng.choice(n_items, m, p=p_item / p_item.sum())
        codes = np.unique(np.concatenate([codes, u.astype(np.int64) * n_items + i]))
    codes = rng.permutation(codes)[:n]
    users, items = codes // n_items, codes % n_items
    # ratings from a small latent model, in half stars: there is signal to learn
    uf, itf = rng.normal(0, 0.5, (n_users, 8)), rng.normal(0, 0.5, (n_items, 8))
    bu, bi = rng.normal(0, 0.4, n_users), rng.normal(0, 0.5, n_items)
    score = 3.5 + bu[users] + bi[items] + np.einsum("nk,nk->n", uf[users], itf[items]) + rng.normal(0, 0.7, n)
    ratings = np.clip(np.round(score * 2) / 2, 0.5, 5.0)
    stamps = rng.integers(789_652_009, 1_574_327_703, n)  # ML-25M's first and last timestamps
    table = pa.table({"userId": users + 1, "movieId": items + 1, "rating": ratings, "timestamp": stamps})
    write_plain_csv(table, folder / "ratings.tmp")
    movie_ids = np.arange(1, n_items + 1)
    write_plain_csv(
        pa.table(
            {"movieId": movie_ids, "title": [f"Film {m} (2000)" for m in movie_ids], "genres": ["Drama"] * n_items}
        ),
        folder / "movies.csv",
    )
    (folder / "ratings.tmp").rename(done)  # complete files only
    return folder


def data_folder(args: Args, size: str) -> Path:
    shape = "" if (args.users, args.items) == (N_USERS, N_ITEMS) else f"-{args.users}x{args.items}"
    return Path(args.data_dir) / f"{size}{shape}"


def text_ids(folder: Path) -> Path:
    """ratings_text.csv beside ratings.csv: the same rows, ids as 10-character text (written once)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    done = folder / "ratings_text.csv"
    if not done.exists():
        t = pacsv.read_csv(folder / "ratings.csv")
        pad = lambda col, p: pc.binary_join_element_wise(p, pc.utf8_lpad(pc.cast(col, pa.string()), 9, "0"), "")  # noqa: E731
        t = t.set_column(0, "userId", pad(t["userId"], "U")).set_column(1, "movieId", pad(t["movieId"], "M"))
        write_plain_csv(t, folder / "ratings_text.tmp")
        (folder / "ratings_text.tmp").rename(done)
    return done


def measure_one(args: Args) -> dict:
    """One size, in this fresh process: load, one epoch, peak memory."""
    import pytorch_lightning as pl
    import torch

    from emblab.bench import compose
    from emblab.data.reader import Layout, read_file
    from emblab.training.build import build

    torch.set_num_threads(args.threads)
    folder = data_folder(args, args.one)
    path = folder / ("ratings_text.csv" if args.ids == "text" else "ratings.csv")
    start = time.perf_counter()
    read_file(path, Layout(sep=",", user="userId", item="movieId", rating="rating", time="timestamp"))
    csv_s = time.perf_counter() - start
    ranker = args.model == "collab_rank"
    cfg = compose(
        [
            f"model={args.model}",
            "data=interactions",
            f"data.path={path}",
            "data.user_col=userId",
            "data.item_col=movieId",
            f"data.rating_col={'null' if ranker else 'rating'}",
            "data.time_col=timestamp",
            f"data.batch_size={args.batch_size}",
            *([] if ranker else [f"model.steps_per_call={args.steps_per_call}"]),
            *(["~callbacks.early_stopping", "trainer.min_epochs=1"] if ranker else []),
            f"trainer.max_epochs={args.epochs}",
            "trainer.limit_val_batches=0",
            "trainer.num_sanity_val_steps=0",
            *(["trainer.accelerator=gpu", "trainer.devices=1"] if args.device == "cuda" else []),
            "logger=csv",
            "~callbacks.progress_bar",
            "~callbacks.model_summary",
        ],
        Path(args.out) / "runs" / args.one,
    )
    pl.seed_everything(cfg.seed, verbose=False)
    start = time.perf_counter()
    trainer, dm, model, _ = build(cfg)
    setup_s = time.perf_counter() - start
    start = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    epoch_s = (time.perf_counter() - start) / args.epochs
    n = len(dm.train_ds)
    return {
        "ratings": SIZES[args.one],
        "train_ratings": n,
        "csv_read_s": round(csv_s, 2),
        "setup_s": round(setup_s, 2),
        "epoch_s": round(epoch_s, 2),
        "us_per_rating": round(epoch_s / n * 1e6, 3),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    }


def markdown(result: dict) -> str:
    rows = [
        [
            size,
            f"{r['csv_read_s']:.1f} s",
            f"{r['setup_s']:.1f} s",
            f"{r['epoch_s']:.1f} s",
            f"{r['us_per_rating']:.2f}",
            f"{r['peak_rss_gb']:.2f} GB",
        ]
        for size, r in result["sizes"].items()
    ]
    return markdown_table(
        result,
        f"{result.get('model', 'collab')}, {result.get('ids', 'int')} ids, device {result.get('device', 'cpu')}, "
        f"batch {result['batch_size']}, "
        f"steps_per_call {result['steps_per_call']}, {result.get('epochs', 1)} epoch(s)",
        [
            "ratings",
            "ratings.csv read (pyarrow + checks)",
            "DataModule setup",
            "1 epoch (80%), mean",
            "µs per rating",
            "peak RSS",
        ],
        rows,
    )


def main(args: Args) -> dict:
    if args.one:
        print(json.dumps(measure_one(args)))
        return {}
    sizes = choose(args.sizes, SIZES, "sizes")
    out = prepare(args.out, args.threads)
    start = time.perf_counter()
    result = new_result(
        "emblab.bench.scale",
        args.threads,
        batch_size=args.batch_size,
        steps_per_call=args.steps_per_call,
        device=args.device,
        epochs=args.epochs,
        ids=args.ids,
        model=args.model,
        users=args.users,
        items=args.items,
        sizes={},
    )
    for size in sizes:
        folder = generate(SIZES[size], data_folder(args, size), n_users=args.users, n_items=args.items)
        if args.ids == "text":
            text_ids(folder)
        cmd = [
            sys.executable,
            "-m",
            "emblab.bench.scale",
            f"one={size}",
            f"out={args.out}",
            f"data_dir={args.data_dir}",
            f"batch_size={args.batch_size}",
            f"steps_per_call={args.steps_per_call}",
            f"threads={args.threads}",
            f"device={args.device}",
            f"epochs={args.epochs}",
            f"ids={args.ids}",
            f"model={args.model}",
            f"users={args.users}",
            f"items={args.items}",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            raise RuntimeError(f"scale run for {size} failed:\n{proc.stderr[-3000:]}")
        result["sizes"][size] = r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(
            f"{size}: read {r['csv_read_s']} s, setup {r['setup_s']} s, epoch {r['epoch_s']} s, "
            f"peak {r['peak_rss_gb']} GB",
            flush=True,
        )
    result["wall_seconds"] = round(time.perf_counter() - start, 1)
    stem = "scale" if (args.ids, args.model) == ("int", "collab") else f"scale-{args.model}-{args.ids}"
    write_result(out, stem, result, markdown(result), args.update_md)
    return result


if __name__ == "__main__":
    cli.main(Args, main)
