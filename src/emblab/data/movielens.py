"""MovieLens ratings: embedded 100K (from the recbole wheel), GroupLens 100K with its canonical
splits, ml-latest-small and ml-25m. Everything ends as three tensors (user index, item index, rating)
batched by index."""

from __future__ import annotations

import csv
import logging
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from emblab.core.download import carried_file, download, verify
from emblab.core.errors import ConfigError, DataError, EmblabError
from emblab.core.settings import setting
from emblab.data.base import DataConfig, EmblabDataModule, TensorBatchDataset, split_digest

log = logging.getLogger(__name__)

GROUPLENS = "https://files.grouplens.org/datasets/movielens"
CANONICAL_SPLITS = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")
# md5 of the GroupLens ml-100k files (u.data's is published; the others were measured on the archive)
ML100K_FILES = {
    "u.data": "md5:6e47046882bad158b0efbb84cd5cb987", "u.item": "md5:c9e7f390115d79079537301d5204f3f7",
    "u1.base": "md5:4325f44281c9f8c119a3694662d63fc2", "u1.test": "md5:62d5d837e7c8e36550cc956b09c2ecc8",
    "u2.base": "md5:79541afecccbd5365bb2c09b123a01c7", "u2.test": "md5:1951a71b7e1f4ed254508007fa2f6b70",
    "u3.base": "md5:55c67a63f516fa9e593d68c3be779970", "u3.test": "md5:cb3e4d0a9152041772285232ca002d4f",
    "u4.base": "md5:66f64a75eeeffd20ff09533bcd31adcf", "u4.test": "md5:328acfca94e85d01b1d7e92c7d73df3b",
    "u5.base": "md5:0becb3392339231c08ba316944c79095", "u5.test": "md5:bec898f7091dba3b7bdf793d1998d2d6",
    "ua.base": "md5:346eb46a756be3b382bdef4f7dcf3a01", "ua.test": "md5:52e5d0355092dc1596899855b220508f",
    "ub.base": "md5:e4ce94f6e01e45f65b91a70bb9e8da2f", "ub.test": "md5:5292d1e388d156aa0c19c384cdf35aca",
    "u.user": "md5:1b53539edc13caad0282c8500608a319",
}


@dataclass(frozen=True)
class RatingsFormat:
    sep: str
    header: tuple[str, ...] | None  # column names as the file's header spells them; None: no header
    rating_range: tuple[float, float]


INTER = RatingsFormat("\t", ("user_id:token", "item_id:token", "rating:float", "timestamp:float"), (1, 5))
UDATA = RatingsFormat("\t", None, (1, 5))
RATINGS_CSV = RatingsFormat(",", ("userId", "movieId", "rating", "timestamp"), (0.5, 5))
COLUMNS = ("user", "item", "rating", "timestamp")


@dataclass(frozen=True)
class Source:
    archive: str | None  # file name at GroupLens; None for the embedded copy
    archive_checksum: str | None
    ratings: str
    titles: str
    fmt: RatingsFormat
    users: str | None = None  # the file of user attributes (age, gender, occupation), where the set has one


SOURCES = {
    "embedded": Source(None, None, "ml-100k.inter", "ml-100k.item", INTER, "ml-100k.user"),
    "ml-100k": Source("ml-100k.zip", "md5:0e33842e24a9c977be4e0107933c0723", "u.data", "u.item", UDATA, "u.user"),
    "ml-latest-small": Source("ml-latest-small.zip",
                              "sha256:696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",
                              "ratings.csv", "movies.csv", RATINGS_CSV),
    "ml-25m": Source("ml-25m.zip", "md5:6b51fb2759a8657d3bfcbfc42b592ada", "ratings.csv", "movies.csv",
                     RATINGS_CSV),
}
EMBEDDED_CHECKSUMS = {"ml-100k.inter": "md5:a8a8c3f165aedc53f63b5dc0a0463b14",
                      "ml-100k.item": "md5:fb748e97e64d9a35421d06d7083d0959",
                      "ml-100k.user": "md5:ac50ecbab626dbefa83288a3593f92ab"}
# MovieLens 1M's age groups (under 18, 18-24, ..., 56+), for the sets that give an exact age
AGE_BANDS = (18, 25, 35, 45, 50, 56)


# ---------------------------------------------------------------- reading, with exact error locations
def read_ratings(path: str | Path, fmt: RatingsFormat) -> pd.DataFrame:
    """Ratings file -> DataFrame(user int64, item int64, rating float32, timestamp int64).

    Fast path: pyarrow's parser. Anything odd (a parse error, a non-number, a rating out of range)
    sends us to a line-by-line scan that names the file, line and column of the first problem.
    Blank lines are ignored; nothing else is skipped. UTF-8, with or without a byte-order mark.
    """
    path = Path(path)
    if fmt.header is not None:
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            header = next(csv.reader([f.readline().rstrip("\r\n")], delimiter=fmt.sep))  # quoted names too
        missing = [c for c in fmt.header if c not in header]
        if missing:
            raise DataError(path, f"missing column(s) {missing}; header is {header}", line=1)
    try:
        df = pd.read_csv(path, sep=fmt.sep, engine="pyarrow", header=0 if fmt.header else None,
                         usecols=list(fmt.header) if fmt.header else None, encoding="utf-8-sig")
        if fmt.header:
            df = df[list(fmt.header)]
        df.columns = list(COLUMNS)
        ok = all(pd.api.types.is_numeric_dtype(df[c]) for c in COLUMNS) and not df.isna().any().any()
        lo, hi = fmt.rating_range
        ok = ok and bool(df["rating"].between(lo, hi).all())
        # ids parsed as integers: an id past the int64 range arrives as a float (or not at all)
        ok = ok and all(pd.api.types.is_integer_dtype(df[c]) for c in ("user", "item"))
        ok = ok and bool(df["timestamp"].between(-(2.0**63), 2.0**63 - 1024).all())  # finite, fits int64
    except Exception:  # noqa: BLE001 - any parser failure is diagnosed precisely below
        ok = False
    if not ok:
        _raise_first_problem(path, fmt)
    if not len(df):
        raise DataError(path, "holds no ratings" + (" (a header only)" if fmt.header else ""))
    return df.astype({"user": "int64", "item": "int64", "rating": "float32", "timestamp": "int64"})


def _raise_first_problem(path: Path, fmt: RatingsFormat) -> None:
    names = fmt.header or COLUMNS
    lo, hi = fmt.rating_range
    n_data = 0
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise DataError(path, f"not UTF-8 text ({e.reason}, byte {e.start + 1} of the line)",
                                line=lineno) from None
            if lineno == 1 and fmt.header:
                continue
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            n_data += 1
            fields = line.split(fmt.sep)
            if len(fields) != len(names):
                raise DataError(path, f"expected {len(names)} fields separated by {fmt.sep!r}, "
                                      f"found {len(fields)}: {line[:80]!r}", line=lineno)
            for name, kind, value in zip(names, COLUMNS, fields):
                try:
                    number = int(value) if kind in ("user", "item") else float(value)
                except ValueError:
                    raise DataError(path, f"{value!r} is not a{'n integer id' if kind in ('user', 'item') else ' number'}",
                                    line=lineno, column=name) from None
                if kind == "rating" and not lo <= number <= hi:
                    raise DataError(path, f"rating {value} is outside [{lo}, {hi}]", line=lineno, column=name)
                if kind in ("rating", "timestamp") and not math.isfinite(number):
                    raise DataError(path, f"{kind} {value} is not a finite number", line=lineno, column=name)
                if kind == "timestamp" and not -(2.0**63) <= number <= 2.0**63 - 1024:
                    raise DataError(path, f"timestamp {value} is outside the 64-bit integer range", line=lineno,
                                    column=name)
                if kind in ("user", "item") and not -(2**63) <= number < 2**63:
                    raise DataError(path, f"id {value} is outside the 64-bit integer range", line=lineno,
                                    column=name)
    if not n_data:
        raise DataError(path, "holds no ratings" + (" (a header only)" if fmt.header else ""))
    raise DataError(path, "could not be parsed as a ratings file (no single bad line found)")


def read_titles(path: str | Path, source: str) -> dict[int, str]:
    """item id -> title. Titles only label interpretation output, so bad rows here are an error too."""
    path = Path(path)
    if source == "embedded":  # recbole: item_id, movie_title, release_year, class (tab, header)
        df = pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False)
        ids, title, year = df.iloc[:, 0], df.iloc[:, 1], df.iloc[:, 2]
        titles = title.where(year == "", title + " (" + year + ")")
    elif source == "ml-100k":  # u.item: id|title|release date|..., latin-1, no header
        df = pd.read_csv(path, sep="|", header=None, encoding="latin-1", dtype=str, keep_default_na=False,
                         quoting=csv.QUOTE_NONE)
        ids, titles = df[0], df[1]
    else:  # movies.csv: movieId,title,genres (quoted CSV)
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
        ids, titles = df["movieId"], df["title"]
    bad = ~ids.str.fullmatch(r"\d+")
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(path, f"item id {ids.iloc[row]!r} is not an integer", line=row + 1 + (source != "ml-100k"),
                        column=str(df.columns[0]))
    return dict(zip(ids.astype("int64"), titles))


def _first_bad(path, df: pd.DataFrame, bad: pd.Series, column, what: str, header: bool) -> None:
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(path, f"{df[column].iloc[row]!r} is not {what}", line=row + 1 + header, column=str(column))


def read_users(path: str | Path, source: str) -> pd.DataFrame:
    """User attributes -> DataFrame(user int64, gender, age band, occupation as strings)."""
    path = Path(path)
    if source == "embedded":  # recbole: user_id, age, gender, occupation, zip_code (tab, header)
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE)
        cols = list(df.columns[:4])
    else:  # u.user: id|age|gender|occupation|zip, no header
        df = pd.read_csv(path, sep="|", header=None, dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE)
        cols = [0, 1, 2, 3]
    if df.shape[1] < 4:
        raise DataError(path, f"expected at least 4 fields (id, age, gender, occupation), found {df.shape[1]}", line=1)
    uid, age, gender, occupation = cols
    header = source == "embedded"
    _first_bad(path, df, ~df[uid].str.fullmatch(r"\d+"), uid, "an integer user id", header)
    _first_bad(path, df, ~df[age].str.fullmatch(r"\d{1,3}"), age, "an age in years", header)
    _first_bad(path, df, df[gender].str.strip() == "", gender, "a gender", header)
    _first_bad(path, df, df[occupation].str.strip() == "", occupation, "an occupation", header)
    band = np.searchsorted(AGE_BANDS, df[age].astype(int).to_numpy(), side="right")
    return pd.DataFrame({"user": df[uid].astype("int64"), "gender": df[gender].str.strip(),
                         "age": [f"age band {b}" for b in band], "occupation": df[occupation].str.strip()})


def read_item_features(path: str | Path, source: str) -> tuple[np.ndarray, list[list[str]], np.ndarray]:
    """The titles file's genres and release years -> (item ids (N,), genres per item, year (N,), NaN unknown)."""
    path = Path(path)
    if source == "embedded":  # recbole: item_id, movie_title, release_year, class (space-separated genres)
        df = pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False)
        ids, years, genres = df.iloc[:, 0], df.iloc[:, 2], [g.split() for g in df.iloc[:, 3]]
    elif source == "ml-100k":  # u.item: id|title|dd-Mon-yyyy|video date|url|19 genre flags (u.genre's order)
        df = pd.read_csv(path, sep="|", header=None, encoding="latin-1", dtype=str, keep_default_na=False,
                         quoting=csv.QUOTE_NONE)
        if df.shape[1] != 24:
            raise DataError(path, f"expected 24 fields (id, title, dates, url, 19 genre flags), found {df.shape[1]}",
                            line=1)
        flags = df.iloc[:, 5:24]
        for c in flags.columns:
            _first_bad(path, df, ~flags[c].isin(("0", "1")), c, "a genre flag 0 or 1", False)
        names = [f"genre {j}" for j in range(19)]  # u.genre's names add nothing the model uses
        genres = [[n for n, f in zip(names, row, strict=True) if f == "1"] for row in flags.to_numpy()]
        ids, years = df[0], df[2].str[-4:]
    else:  # movies.csv: movieId,title,genres ("Action|Comedy"; "(no genres listed)"); the year ends the title
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
        ids, years = df["movieId"], df["title"].str.extract(r"\((\d{4})\)\s*$")[0].fillna("")
        genres = [[] if g == "(no genres listed)" else g.split("|") for g in df["genres"]]
    column = df.columns[0]
    _first_bad(path, df, ~ids.str.fullmatch(r"\d+"), column, "an integer item id", source != "ml-100k")
    year = pd.to_numeric(years.where(years.str.fullmatch(r"\d{4}"), None), errors="coerce").to_numpy(float)
    return ids.astype("int64").to_numpy(), genres, year


def side_tables(user_ids: np.ndarray, item_ids: np.ndarray, users: pd.DataFrame | None,
                item_feats: tuple[np.ndarray, list[list[str]], np.ndarray]) -> dict:
    """Per user, the codes of its gender, age band and occupation in one shared vocabulary (0: not
    in the user file); per item, its genres (each a 1/n share) then its release decade (one-hot).
    Ids missing from the side files get code 0 / a zero row, and are counted."""
    out, missing = {}, {}
    if users is not None:
        table = users.drop_duplicates("user", keep="last").set_index("user").reindex(user_ids)
        missing["users without attributes"] = int(table["gender"].isna().sum())
        codes, offset = [], 1
        for field in ("gender", "age", "occupation"):
            cats = pd.Categorical(table[field])
            codes.append(np.where(cats.codes >= 0, cats.codes + offset, 0))
            offset += len(cats.categories)
        out["user_codes"] = torch.from_numpy(np.stack(codes, 1).astype(np.int64))  # (n_users, 3)
        out["n_user_codes"] = offset
    ids, genres, year = item_feats
    pos = pd.Index(ids).get_indexer(item_ids)  # -1: an item the titles file lacks
    names = sorted({g for gs in genres for g in gs})
    col = {g: j for j, g in enumerate(names)}
    decade = np.where(np.isnan(year), -1, year // 10).astype(int)
    decades = sorted(set(decade[decade >= 0]))
    feats = np.zeros((len(item_ids), len(names) + len(decades)), np.float32)  # (n_items, genres + decades)
    for row, p in enumerate(pos):
        if p < 0:
            continue
        for g in genres[p]:
            feats[row, col[g]] = 1 / len(genres[p])
        if decade[p] >= 0:
            feats[row, len(names) + decades.index(decade[p])] = 1
    missing["items without genres"] = int((feats[:, : len(names)].sum(1) == 0).sum())
    missing["items without a release year"] = int((feats[:, len(names) :].sum(1) == 0).sum())
    out["item_feats"] = torch.from_numpy(feats)
    out["missing"] = {k: n for k, n in missing.items() if n}
    return out


def dedupe(df: pd.DataFrame, policy: str, path) -> pd.DataFrame:
    """Several ratings of one (user, item): 'last' keeps the latest by timestamp (the user's current
    opinion), 'mean' averages them, 'error' refuses. The count always goes to the log."""
    dup = df.duplicated(["user", "item"], keep=False)
    n_pairs = int(df.loc[dup, ["user", "item"]].drop_duplicates().shape[0]) if dup.any() else 0
    if not n_pairs:
        return df
    if policy == "error":
        first = int(np.flatnonzero(dup.to_numpy())[0])
        raise DataError(path, f"{n_pairs} (user, item) pairs are rated more than once, the first at row {first + 1} "
                              "(set data.duplicates=last or mean to accept them)")
    before = len(df)
    if policy == "last":
        df = df.sort_values("timestamp", kind="stable").drop_duplicates(["user", "item"], keep="last")
    elif policy == "mean":
        df = df.groupby(["user", "item"], as_index=False).agg(rating=("rating", "mean"), timestamp=("timestamp", "max"))
    else:
        raise ConfigError(f"data.duplicates={policy!r}: expected last, mean or error")
    log.warning("%s: %d (user, item) pairs rated more than once; data.duplicates=%s turned %d rows into %d",
                path, n_pairs, policy, before, len(df))
    return df.reset_index(drop=True)


def last_ratings_mask(df: pd.DataFrame, k: int) -> np.ndarray:
    """True for each user's last k ratings by timestamp (ties: file order), for users with more than k."""
    ordered = df.reset_index(drop=True).sort_values(["user", "timestamp"], kind="stable")
    by_user = ordered.groupby("user", sort=False)
    last = (by_user.cumcount(ascending=False) < k) & (by_user["user"].transform("size") > k)
    return last.sort_index().to_numpy()


def subsample_mask(users: np.ndarray, frac: float, user_frac: float, seed: int) -> np.ndarray:
    """Which ratings a smaller copy of the data keeps: each user with probability user_frac (all of
    their ratings), then each remaining rating with probability frac. Seeded, so every model and
    every run sees the same smaller set; (N,) bool."""
    g = np.random.default_rng(seed)
    ids = np.unique(users)
    keep = np.isin(users, ids[g.random(len(ids)) < user_frac]) if user_frac < 1 else np.ones(len(users), bool)
    return keep & (g.random(len(users)) < frac) if frac < 1 else keep


# ---------------------------------------------------------------- the settings
@dataclass
class MovieLensConfig(DataConfig):
    """data=movielens. source: embedded (MovieLens 100K from the recbole wheel) | ml-100k | ml-latest-small |
    ml-25m; root: a folder holding the extracted files or the GroupLens zip (default data_dir/movielens/<source>).
    split: random (val_frac, split_seed) | time (each user's last `holdout` ratings by timestamp) | with
    source=ml-100k a canonical split u1..u5, ua, ub. subsample, subsample_users: keep this fraction of the
    ratings / of the users (all their ratings), seeded by split_seed, before the split. side_features: each
    user's gender, age band, occupation (ml-100k, embedded) and each item's genres and release decade.
    duplicates: a (user, item) rated more than once: last (latest timestamp) | mean | error."""

    _target_: str = "emblab.data.movielens.MovieLensDataModule"
    source: str = setting("embedded", choices=tuple(SOURCES))
    root: str | None = None
    data_dir: str = "data"
    split: str = setting("random", choices=("random", "time", *CANONICAL_SPLITS))
    val_frac: float = setting(0.2, gt=0, lt=1)
    split_seed: int = setting(42, ge=0)
    holdout: int = setting(5, ge=1)
    subsample: float = setting(1.0, gt=0, le=1)
    subsample_users: float = setting(1.0, gt=0, le=1)
    side_features: bool = False
    duplicates: str = setting("last", choices=("last", "mean", "error"))
    download: bool = True

    def check(self, prefix: str) -> None:
        if self.split in CANONICAL_SPLITS and self.source != "ml-100k":
            raise ConfigError(f"{prefix}.split={self.split} is a GroupLens ml-100k split: use {prefix}.source=ml-100k")


# ---------------------------------------------------------------- the DataModule
class MovieLensDataModule(EmblabDataModule):
    """MovieLens ratings for collaborative filtering.

    source: embedded | ml-100k | ml-latest-small | ml-25m
    root:   folder with the extracted files or the GroupLens zip; default data_dir/movielens/<source>
    split:  random (val_frac, split_seed); time: each user's last `holdout` ratings by timestamp
            validate (users with no more than that many train only), as a recommender is used; or,
            for ml-100k, a canonical split u1..u5, ua, ub
    subsample, subsample_users: keep this fraction of the ratings / of the users (all their
    ratings), seeded by split_seed, before the split (a canonical split: from its base and test
    alike); for measuring how a recipe behaves as the data grows
    side_features: also give the model each user's gender, age band and occupation (where the set
            has a user file: ml-100k, embedded) and each item's genres and release decade, so ids
            with few ratings borrow from others alike (EmbeddingDotBias's side tables)
    """

    kind = "ratings"

    Config = MovieLensConfig

    def __init__(self, cfg: MovieLensConfig):
        super().__init__(cfg)
        self.source, self.split, self.val_frac, self.split_seed = cfg.source, cfg.split, cfg.val_frac, cfg.split_seed
        self.holdout, self.subsample, self.subsample_users = cfg.holdout, cfg.subsample, cfg.subsample_users
        self.duplicates, self.allow_download = cfg.duplicates, cfg.download
        self.side_features, self.side = cfg.side_features, {}
        self.root = Path(cfg.root) if cfg.root else Path(cfg.data_dir) / "movielens" / cfg.source
        self.user_ids = self.item_ids = None

    # -- files
    def _files(self) -> dict[str, Path]:
        src = SOURCES[self.source]
        if self.source == "embedded":
            return {name: carried_file("recbole", f"recbole/dataset_example/ml-100k/{name}", checksum)
                    for name, checksum in EMBEDDED_CHECKSUMS.items() if name != src.users or self.side_features}
        wanted = [src.ratings] + ([f"{self.split}.base", f"{self.split}.test"] if self.split in CANONICAL_SPLITS else [])
        found = self._find(wanted)
        if found is None:
            archive = self.root / src.archive
            if not archive.exists() and not self.allow_download:
                raise EmblabError(f"MovieLens {self.source} not found in {self.root}: put {src.archive} (from "
                                  f"{GROUPLENS}/{src.archive}) or its extracted files there, or set data.download=true")
            download(f"{GROUPLENS}/{src.archive}", archive, src.archive_checksum)
            with zipfile.ZipFile(archive) as z:
                z.extractall(self.root)
            found = self._find(wanted)
            if found is None:
                raise DataError(archive, f"does not contain {wanted}")
        folder = next(iter(found.values())).parent
        titles = folder / src.titles
        if titles.is_file():  # optional without side features: titles only label interpretation output
            found[src.titles] = titles
        if self.side_features:
            for name in (src.titles, src.users):
                if name and not (folder / name).is_file():
                    raise EmblabError(f"data.side_features=true needs {name} beside the ratings in {folder}")
                if name:
                    found[name] = folder / name
        if self.source == "ml-100k":
            for path in found.values():
                verify(path, ML100K_FILES[path.name])
        else:
            log.info("%s: no published digest for extracted files; the archive is verified when it is used",
                     self.source)
        return found

    def _find(self, names: list[str]) -> dict[str, Path] | None:
        """The files, directly in root or in the folder the GroupLens zip extracts to."""
        for folder in (self.root, self.root / self.source):
            if all((folder / n).is_file() for n in names):
                return {n: folder / n for n in names}
        return None

    def prepare_data(self) -> None:
        self._files()  # downloads when needed; verifies checksums

    # -- tensors
    def setup(self, stage: str | None = None) -> None:
        if self.user_ids is not None:
            return
        src, files = SOURCES[self.source], self._files()
        if self.split == "random":
            df = dedupe(read_ratings(files[src.ratings], src.fmt), self.duplicates, files[src.ratings])
            df = df[self._kept(df)].reset_index(drop=True)
            g = torch.Generator().manual_seed(self.split_seed)
            perm = torch.randperm(len(df), generator=g).numpy()
            n_val = int(round(len(df) * self.val_frac))
            if not 0 < n_val < len(df):
                raise DataError(files[src.ratings], f"{len(df)} ratings are too few to split at data.val_frac="
                                                    f"{self.val_frac} ({n_val} would validate)")
            is_val = np.zeros(len(df), dtype=bool)
            is_val[perm[:n_val]] = True
        elif self.split == "time":
            df = dedupe(read_ratings(files[src.ratings], src.fmt), self.duplicates, files[src.ratings])
            df = df[self._kept(df)].reset_index(drop=True)
            is_val = last_ratings_mask(df, self.holdout)
            if not is_val.any():
                raise DataError(files[src.ratings], f"no user has more than data.holdout={self.holdout} ratings: "
                                                    "nothing to validate on")
        else:
            base, test = (read_ratings(files[f"{self.split}.{p}"], src.fmt) for p in ("base", "test"))
            df = pd.concat([base, test], ignore_index=True)
            is_val = np.r_[np.zeros(len(base), bool), np.ones(len(test), bool)]
            kept = self._kept(df)
            df, is_val = df[kept].reset_index(drop=True), is_val[kept]
        if src.titles in files:
            titles = read_titles(files[src.titles], self.source)
        else:
            titles = {}
            log.warning("%s: no %s beside the ratings; items are labelled by their ids", self.root, src.titles)

        user_ids, users = np.unique(df["user"].to_numpy(), return_inverse=True)
        item_ids, items = np.unique(df["item"].to_numpy(), return_inverse=True)
        self.user_ids, self.item_ids = torch.from_numpy(user_ids), torch.from_numpy(item_ids)
        if self.side_features:
            people = read_users(files[src.users], self.source) if src.users else None
            self.side = side_tables(user_ids, item_ids, people, read_item_features(files[src.titles], self.source))
            log.info("MovieLens %s: side features: %s per user, %d per item%s", self.source,
                     "gender, age band, occupation" if people is not None else "none",
                     self.side["item_feats"].shape[1],
                     "".join(f"; {n} {k} (zero features)" for k, n in self.side["missing"].items()))
        self.item_titles = [titles.get(int(i), f"item {i}") for i in item_ids]
        users, items = torch.from_numpy(users), torch.from_numpy(items)
        ratings = torch.from_numpy(df["rating"].to_numpy(np.float32, copy=True))
        self.item_counts = torch.bincount(items, minlength=len(item_ids)).int()
        # every known (user, item), as CSR over users, so `recommend` can skip what a user has seen
        order = torch.argsort(users * len(item_ids) + items)
        self.seen_indptr = torch.cat([torch.zeros(1, dtype=torch.long),
                                      torch.bincount(users, minlength=len(user_ids)).cumsum(0)]).int()
        self.seen_items = items[order].int()

        self.split_id = split_digest(is_val)
        val = torch.from_numpy(is_val)
        # ids with no training rating keep their initial embedding: count the validation ratings they carry
        seen_u = torch.bincount(users[~val], minlength=len(user_ids)) > 0
        seen_i = torch.bincount(items[~val], minlength=len(item_ids)) > 0
        self.unseen = {"validation": {k: n for k, n in (("user", int((~seen_u[users[val]]).sum())),
                                                       ("item", int((~seen_i[items[val]]).sum()))) if n}}
        self.train_ds = TensorBatchDataset(users[~val], items[~val], ratings[~val])
        self.val_ds = TensorBatchDataset(users[val], items[val], ratings[val])
        unseen = ", ".join(f"{n} of a{'n' * (k == 'item')} {k} never seen in training"
                           for k, n in self.unseen["validation"].items())
        log.info("MovieLens %s: %d users, %d items, %d train / %d validation ratings (split=%s)%s",
                 self.source, len(user_ids), len(item_ids), int((~val).sum()), int(val.sum()), self.split,
                 f"; validation ratings {unseen}" if unseen else "")

    def _kept(self, df: pd.DataFrame) -> np.ndarray:
        if self.subsample == self.subsample_users == 1:
            return np.ones(len(df), bool)
        kept = subsample_mask(df["user"].to_numpy(), self.subsample, self.subsample_users, self.split_seed)
        log.info("MovieLens %s: subsample=%s subsample_users=%s keep %d of %d ratings", self.source,
                 self.subsample, self.subsample_users, int(kept.sum()), len(df))
        return kept

    def dims(self) -> dict:
        dims = {"n_users": len(self.user_ids), "n_items": len(self.item_ids),
                "rating_range": list(SOURCES[self.source].fmt.rating_range)}
        if self.side_features:
            dims["n_user_codes"] = self.side.get("n_user_codes", 0)
            dims["n_user_fields"] = self.side["user_codes"].shape[1] if "user_codes" in self.side else 0
            dims["n_item_feats"] = self.side["item_feats"].shape[1]
        return dims

    def unseen_counts(self) -> dict[str, dict[str, int]]:
        return getattr(self, "unseen", {})

    def artifacts(self) -> dict:
        return {"source": self.source, "user_ids": self.user_ids, "item_ids": self.item_ids,
                "item_titles": list(self.item_titles), "item_counts": self.item_counts,
                "seen_indptr": self.seen_indptr, "seen_items": self.seen_items,
                "rating_range": list(SOURCES[self.source].fmt.rating_range), "split": self.split_id}

