"""What the interactions reader does to the rows before they become tensors: duplicates resolved, a seeded smaller
copy, an iterative k-core, and the splits a recommender needs. Vectorised: numpy and pandas over whole columns."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch

from emblab.core.errors import ConfigError, DataError

log = logging.getLogger(__name__)


SPLITS = ("random", "user_random", "time", "time_global")


# ---------------------------------------------------------------- filters
def resolve_duplicates(df: pd.DataFrame, policy: str, path) -> pd.DataFrame:
    """Several rows of one (user, item): last (the latest by time, else by file order), mean, sum (of counts), or
    error. Counted in the log."""
    key = df["u"].to_numpy() * (int(df["i"].max()) + 1) + df["i"].to_numpy()
    dup = pd.Series(key).duplicated(keep=False).to_numpy()
    if not dup.any():
        return df
    n_pairs = len(np.unique(key[dup]))
    if policy == "error":
        raise DataError(
            path,
            f"{n_pairs} (user, item) pairs occur more than once, the first in data row "
            f"{int(np.flatnonzero(dup)[0]) + 1} (data.duplicates=last, mean or sum accepts them)",
        )
    before = len(df)
    if policy == "last":
        order = np.argsort(df["time"].to_numpy(), kind="stable") if "time" in df else np.arange(len(df))
        last = pd.Series(key[order]).duplicated(keep="last").to_numpy()
        df = df.iloc[np.sort(order[~last])]
    else:
        how = {c: policy if c in ("rating", "weight") else "max" for c in df.columns if c not in ("u", "i")}
        df = df.groupby(["u", "i"], as_index=False, sort=False).agg(how)
    log.warning(
        "%s: %d (user, item) pairs occur more than once; data.duplicates=%s turned %d rows into %d",
        path,
        n_pairs,
        policy,
        before,
        len(df),
    )
    return df.reset_index(drop=True)


def k_core(u: np.ndarray, i: np.ndarray, k: int) -> np.ndarray:
    """Rows kept when users and items with fewer than k interactions are dropped, again until none is left (an
    iterative k-core); (N,) bool."""
    keep = np.ones(len(u), bool)
    while True:
        n_u, n_i = np.bincount(u[keep], minlength=u.max() + 1), np.bincount(i[keep], minlength=i.max() + 1)
        drop = keep & ((n_u[u] < k) | (n_i[i] < k))
        if not drop.any():
            return keep
        keep &= ~drop


def subsample_mask(users: np.ndarray, frac: float, user_frac: float, seed: int) -> np.ndarray:
    """Which rows a smaller copy keeps: each user with probability user_frac (all of their rows), then each row
    with probability frac. Seeded, so every model and run sees the same smaller set; (N,) bool."""
    g = np.random.default_rng(seed)
    ids = np.unique(users)
    keep = np.isin(users, ids[g.random(len(ids)) < user_frac]) if user_frac < 1 else np.ones(len(users), bool)
    return keep & (g.random(len(users)) < frac) if frac < 1 else keep


def filter_rows(df: pd.DataFrame, cfg, f) -> pd.DataFrame:
    """A declared scale (f.rating_range), duplicates, the subsample and the k-core of the interactions settings
    `cfg`, each counted in the log."""
    if f.rating_range and "rating" in df:
        lo, hi = f.rating_range
        out = ~df["rating"].between(lo, hi).to_numpy()
        if out.any() and cfg.out_of_range == "error":
            row = int(np.flatnonzero(out)[0])
            line = None if f.canonical or f.path.suffix in (".parquet", ".pq") else row + 1 + (not f.layout.columns)
            raise DataError(
                f.path,
                f"rating {df['rating'].iloc[row]:g} is outside [{lo:g}, {hi:g}] "
                "(data.out_of_range=drop drops such rows)",
                line=line,
                column=f.layout.rating,
            )
        if out.any():
            log.warning("%s: data.out_of_range=drop removes %d ratings outside [%g, %g]", f.path, out.sum(), lo, hi)
            df = df[~out].reset_index(drop=True)
    df = resolve_duplicates(df, cfg.duplicates, f.path)
    if cfg.subsample < 1 or cfg.subsample_users < 1:
        keep = subsample_mask(df["u"].to_numpy(), cfg.subsample, cfg.subsample_users, cfg.split_seed)
        log.info(
            "%s: subsample=%s subsample_users=%s keep %d of %d rows",
            f.path,
            cfg.subsample,
            cfg.subsample_users,
            int(keep.sum()),
            len(df),
        )
        df = df[keep].reset_index(drop=True)
    if cfg.min_interactions > 1:
        keep = k_core(df["u"].to_numpy(), df["i"].to_numpy(), cfg.min_interactions)
        log.info(
            "%s: data.min_interactions=%d (iterative k-core) removes %d of %d interactions",
            f.path,
            cfg.min_interactions,
            int((~keep).sum()),
            len(df),
        )
        df = df[keep].reset_index(drop=True)
    if not len(df):
        raise DataError(f.path, "no interactions are left after the filters (data.min_interactions, subsample)")
    return df


# ---------------------------------------------------------------- splits
def split_rows(df: pd.DataFrame, cfg, path) -> np.ndarray:  # cfg: an InteractionsConfig
    """Each row's part, 0 train, 1 validation, 2 test. random: seeded global fractions; user_random: each user's
    rows split at random by the fractions (RecBole's 8:1:1 per user, the floor of each part); time: each user's
    last test_holdout rows by time test, the holdout before them validate (users with no more rows train only);
    time_global: rows at or after cutoff validate, at or after test_cutoff test."""
    n, part = len(df), np.zeros(len(df), np.int8)
    rng = np.random.default_rng(cfg.split_seed)
    if cfg.split == "random":
        order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.split_seed)).numpy()
        n_val, n_test = int(round(n * cfg.val_frac)), int(round(n * cfg.test_frac))
        part[order[:n_val]], part[order[n_val : n_val + n_test]] = 1, 2
    elif cfg.split in ("user_random", "time"):
        if cfg.split == "time" and "time" not in df:
            raise ConfigError("data.split=time needs data.time_col (a timestamp or date column)")
        key = rng.random(n) if cfg.split == "user_random" else df["time"].to_numpy()
        u = df["u"].to_numpy()
        order = np.lexsort((np.arange(n), key, u))  # by user, then key, then file order
        su = u[order]
        size = np.bincount(u)[su]
        from_end = size - 1 - (np.arange(n) - np.searchsorted(su, su))  # 0: the user's last row
        if cfg.split == "user_random":  # RecBole's counts: floors, a part of less than one row bumped to one
            n_test, n_val = np.floor(size * cfg.test_frac), np.floor(size * cfg.val_frac)
            for frac in (cfg.test_frac, cfg.val_frac):
                n_train = size - n_test - n_val
                bump = (n_train > 1) & (size * frac > 0) & (size * frac < 1)
                if frac is cfg.test_frac:
                    n_test = n_test + bump
                else:
                    n_val = n_val + bump
        else:
            enough = size > cfg.holdout + cfg.test_holdout
            n_test, n_val = np.where(enough, cfg.test_holdout, 0), np.where(enough, cfg.holdout, 0)
        part[order] = np.where(from_end < n_test, 2, np.where(from_end < n_test + n_val, 1, 0))
    else:  # time_global
        if "time" not in df or not cfg.cutoff:
            raise ConfigError("data.split=time_global needs data.time_col and data.cutoff (a date or a number)")
        t = df["time"].to_numpy()
        part[t >= as_time(cfg.cutoff)] = 1
        if cfg.test_cutoff:
            part[t >= as_time(cfg.test_cutoff)] = 2
    for p, what in ((1, "validate"), (0, "train")):
        if not (part == p).any():
            raise DataError(
                path,
                f"{n} interactions leave nothing to {what} on with data.split={cfg.split} (its "
                "fractions, holdout or cutoff)",
            )
    return part


def as_time(value: str | float) -> float:
    try:
        return float(value)
    except ValueError:
        return pd.Timestamp(value, tz="UTC").value / 1e9


def count_unseen(u: np.ndarray, i: np.ndarray, part: np.ndarray) -> dict[str, dict[str, int]]:
    """Validation and test rows whose user or item training never saw (they are scored with an untrained row)."""
    trained_u, trained_i = (
        np.bincount(u[part == 0], minlength=u.max() + 1) > 0,
        np.bincount(i[part == 0], minlength=i.max() + 1) > 0,
    )
    out = {}
    for name, p in (("validation", 1), ("test", 2)):
        counts = {"user": int((~trained_u[u[part == p]]).sum()), "item": int((~trained_i[i[part == p]]).sum())}
        if any(counts.values()):
            out[name] = {k: n for k, n in counts.items() if n}
    return out
