"""MovieLens, as a preset of the interactions reader (data/interactions.py): where each set's files are
(embedded in the recbole wheel, a folder, or downloaded from GroupLens with checksums), how they are laid out,
their titles, the canonical ml-100k splits u1..u5, ua, ub, and the users' and films' attributes for side
features."""

from __future__ import annotations

import csv
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from emblab.core.download import carried_file, download, verify
from emblab.core.errors import DataError, EmblabError
from emblab.data.reader import Files, Layout

log = logging.getLogger(__name__)

GROUPLENS = "https://files.grouplens.org/datasets/movielens"
CANONICAL_SPLITS = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")
# md5 of the GroupLens ml-100k files (u.data's is published; the others were measured on the archive)
ML100K_FILES = {
    "u.data": "md5:6e47046882bad158b0efbb84cd5cb987",
    "u.item": "md5:c9e7f390115d79079537301d5204f3f7",
    "u1.base": "md5:4325f44281c9f8c119a3694662d63fc2",
    "u1.test": "md5:62d5d837e7c8e36550cc956b09c2ecc8",
    "u2.base": "md5:79541afecccbd5365bb2c09b123a01c7",
    "u2.test": "md5:1951a71b7e1f4ed254508007fa2f6b70",
    "u3.base": "md5:55c67a63f516fa9e593d68c3be779970",
    "u3.test": "md5:cb3e4d0a9152041772285232ca002d4f",
    "u4.base": "md5:66f64a75eeeffd20ff09533bcd31adcf",
    "u4.test": "md5:328acfca94e85d01b1d7e92c7d73df3b",
    "u5.base": "md5:0becb3392339231c08ba316944c79095",
    "u5.test": "md5:bec898f7091dba3b7bdf793d1998d2d6",
    "ua.base": "md5:346eb46a756be3b382bdef4f7dcf3a01",
    "ua.test": "md5:52e5d0355092dc1596899855b220508f",
    "ub.base": "md5:e4ce94f6e01e45f65b91a70bb9e8da2f",
    "ub.test": "md5:5292d1e388d156aa0c19c384cdf35aca",
    "u.user": "md5:1b53539edc13caad0282c8500608a319",
}
# how each set's ratings file is laid out
INTER = Layout("\t", None, "user_id:token", "item_id:token", "rating:float", "timestamp:float")
UDATA = Layout("\t", ("user", "item", "rating", "timestamp"), time="timestamp")
RATINGS_CSV = Layout(",", None, "userId", "movieId", "rating", "timestamp")


@dataclass(frozen=True)
class Source:
    archive: str | None  # file name at GroupLens; None for the embedded copy
    archive_checksum: str | None
    ratings: str
    titles: str
    layout: Layout
    rating_range: tuple[float, float]
    users: str | None = None  # the file of user attributes (age, gender, occupation), where the set has one


SOURCES = {
    "embedded": Source(None, None, "ml-100k.inter", "ml-100k.item", INTER, (1, 5), "ml-100k.user"),
    "ml-100k": Source(
        "ml-100k.zip", "md5:0e33842e24a9c977be4e0107933c0723", "u.data", "u.item", UDATA, (1, 5), "u.user"
    ),
    "ml-latest-small": Source(
        "ml-latest-small.zip",
        "sha256:696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",
        "ratings.csv",
        "movies.csv",
        RATINGS_CSV,
        (0.5, 5),
    ),
    "ml-25m": Source(
        "ml-25m.zip", "md5:6b51fb2759a8657d3bfcbfc42b592ada", "ratings.csv", "movies.csv", RATINGS_CSV, (0.5, 5)
    ),
}
EMBEDDED_CHECKSUMS = {
    "ml-100k.inter": "md5:a8a8c3f165aedc53f63b5dc0a0463b14",
    "ml-100k.item": "md5:fb748e97e64d9a35421d06d7083d0959",
    "ml-100k.user": "md5:ac50ecbab626dbefa83288a3593f92ab",
}
# MovieLens 1M's age groups (under 18, 18-24, ..., 56+), for the sets that give an exact age
AGE_BANDS = (18, 25, 35, 45, 50, 56)


def files(source: str, root: Path, split: str, allow_download: bool, side_features: bool) -> Files:
    """The set's files (downloaded when needed, checksums verified) as the interactions reader takes them."""
    src = SOURCES[source]
    if source == "embedded":
        found = {
            name: carried_file("recbole", f"recbole/dataset_example/ml-100k/{name}", checksum)
            for name, checksum in EMBEDDED_CHECKSUMS.items()
            if name != src.users or side_features
        }
    else:
        wanted = [src.ratings] + ([f"{split}.base", f"{split}.test"] if split in CANONICAL_SPLITS else [])
        found = _find(root, source, wanted)
        if found is None:
            archive = root / src.archive
            if not archive.exists() and not allow_download:
                raise EmblabError(
                    f"MovieLens {source} not found in {root}: put {src.archive} (from "
                    f"{GROUPLENS}/{src.archive}) or its extracted files there, or set data.download=true"
                )
            download(f"{GROUPLENS}/{src.archive}", archive, src.archive_checksum)
            with zipfile.ZipFile(archive) as z:
                z.extractall(root)
            found = _find(root, source, wanted)
            if found is None:
                raise DataError(archive, f"does not contain {wanted}")
        folder = next(iter(found.values())).parent
        for name in (src.titles, src.users if side_features else None):
            if name and (folder / name).is_file():
                found[name] = folder / name
            elif name and side_features:
                raise EmblabError(f"data.side_features=true needs {name} beside the ratings in {folder}")
        if source == "ml-100k":
            for path in found.values():
                verify(path, ML100K_FILES[path.name])
        else:
            log.info("%s: no published digest for extracted files; the archive is verified when it is used", source)
    titles = found.get(src.titles)
    if titles is None:
        log.warning(
            "%s: no %s beside the ratings; items are labelled by their ids", found[src.ratings].parent, src.titles
        )
    canonical = (found[f"{split}.base"], found[f"{split}.test"]) if split in CANONICAL_SPLITS else None
    side = {"titles": titles, "users": found.get(src.users) if src.users else None} if side_features else None
    return Files(
        found[src.ratings],
        src.layout,
        src.rating_range,
        canonical,
        items_path=titles,
        titles=(lambda: read_titles(titles, source)) if titles else None,
        side=None if side is None else {**side, "source": source},
    )


def _find(root: Path, source: str, names: list[str]) -> dict[str, Path] | None:
    """The files, directly in root or in the folder the GroupLens zip extracts to."""
    for folder in (root, root / source):
        if all((folder / n).is_file() for n in names):
            return {n: folder / n for n in names}
    return None


def read_titles(path: str | Path, source: str) -> dict[int, str]:
    """item id -> title. Titles only label interpretation output, so bad rows here are an error too."""
    path = Path(path)
    if source == "embedded":  # recbole: item_id, movie_title, release_year, class (tab, header)
        df = pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False)
        ids, title, year = df.iloc[:, 0], df.iloc[:, 1], df.iloc[:, 2]
        titles = title.where(year == "", title + " (" + year + ")")
    elif source == "ml-100k":  # u.item: id|title|release date|..., latin-1, no header
        df = pd.read_csv(
            path, sep="|", header=None, encoding="latin-1", dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE
        )
        ids, titles = df[0], df[1]
    else:  # movies.csv: movieId,title,genres (quoted CSV)
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
        ids, titles = df["movieId"], df["title"]
    bad = ~ids.str.fullmatch(r"\d+")
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            path,
            f"item id {ids.iloc[row]!r} is not an integer",
            line=row + 1 + (source != "ml-100k"),
            column=str(df.columns[0]),
        )
    return dict(zip(ids.astype("int64"), titles, strict=False))


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
    return pd.DataFrame(
        {
            "user": df[uid].astype("int64"),
            "gender": df[gender].str.strip(),
            "age": [f"age band {b}" for b in band],
            "occupation": df[occupation].str.strip(),
        }
    )


def read_item_features(path: str | Path, source: str) -> tuple[np.ndarray, list[list[str]], np.ndarray]:
    """The titles file's genres and release years -> (item ids (N,), genres per item, year (N,), NaN unknown)."""
    path = Path(path)
    if source == "embedded":  # recbole: item_id, movie_title, release_year, class (space-separated genres)
        df = pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False)
        ids, years, genres = df.iloc[:, 0], df.iloc[:, 2], [g.split() for g in df.iloc[:, 3]]
    elif source == "ml-100k":  # u.item: id|title|dd-Mon-yyyy|video date|url|19 genre flags (u.genre's order)
        df = pd.read_csv(
            path, sep="|", header=None, encoding="latin-1", dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE
        )
        if df.shape[1] != 24:
            raise DataError(
                path, f"expected 24 fields (id, title, dates, url, 19 genre flags), found {df.shape[1]}", line=1
            )
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


def side_tables(
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    users: pd.DataFrame | None,
    item_feats: tuple[np.ndarray, list[list[str]], np.ndarray],
) -> dict:
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


def side_tables_for(f: Files, user_ids, item_ids) -> dict:
    """The side tables of the users and items kept (their raw ids, in index order)."""
    source = f.side["source"]
    people = read_users(f.side["users"], source) if f.side.get("users") else None
    out = side_tables(np.asarray(user_ids), np.asarray(item_ids), people, read_item_features(f.side["titles"], source))
    log.info(
        "MovieLens %s: side features: %s per user, %d per item%s",
        source,
        "gender, age band, occupation" if people is not None else "none",
        out["item_feats"].shape[1],
        "".join(f"; {n} {k} (zero features)" for k, n in out["missing"].items()),
    )
    return out
