"""README's "Your own data" commands run as printed, on small generated files of each kind (file names swapped
for temporary ones, epochs cut short), and the reading guide's line counts are true."""

from __future__ import annotations

import re
import shlex

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, run_cli

README = (ROOT / "README.md").read_text()


def section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end > 0 else None]


def commands(text: str) -> list[list[str]]:
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1).replace("\\\n", " ")
    return [shlex.split(line) for line in block.splitlines() if line.startswith("python ")]


def own_data_files(tmp) -> dict[str, str]:
    rng = np.random.default_rng(0)
    users = ["A2SUAM1J3GNN3B", *(f"A{k:013d}" for k in range(59))]
    items = [f"B{k:09d}" for k in range(80)]
    rows = [
        (u, items[i], int(rng.integers(1, 6)), 1_400_000_000 + t)
        for t, (u, i) in enumerate((u, i) for u in users for i in rng.choice(80, 12, replace=False))
    ]
    pd.DataFrame(rows, columns=["reviewer", "asin", "overall", "unix_time"]).to_csv(tmp / "reviews.csv", index=False)
    plays = pd.DataFrame(
        [(u, a, int(rng.integers(1, 5000))) for u in range(2, 62) for a in rng.choice(np.arange(50, 130), 10, False)],
        columns=["userID", "artistID", "weight"],
    )
    (tmp / "user_artists.dat").write_bytes(plays.to_csv(sep="\t", index=False, lineterminator="\r\n").encode())
    artists = pd.DataFrame(
        {"id": range(50, 130), "name": [f"Artist {k}" for k in range(80)], "url": "u", "pictureURL": "p"}
    )
    (tmp / "artists.dat").write_bytes(artists.to_csv(sep="\t", index=False, lineterminator="\r\n").encode())
    events = pd.DataFrame(
        [
            (f"u{u}", f"i{i}", pd.Timestamp("2024-01-01") + pd.Timedelta(hours=int(t)))
            for u in range(60)
            for t, i in enumerate(rng.choice(70, 10, replace=False))
        ],
        columns=["user_id", "item_id", "ts"],
    )
    events.to_parquet(tmp / "events.parquet")
    return {name: str(tmp / name) for name in ("reviews.csv", "user_artists.dat", "artists.dat", "events.parquet")}


@pytest.mark.integration
def test_your_own_data_commands_run_as_printed(tmp_path):
    files = own_data_files(tmp_path)
    cmds = commands(section("Your own data"))
    assert len([c for c in cmds if c[1] == "train.py"]) == 3
    ckpt = None
    for n, cmd in enumerate(cmds):
        args = [
            f"{a.split('=', 1)[0]}={files[a.split('=', 1)[1]]}" if "=" in a and a.split("=", 1)[1] in files else a
            for a in cmd[1:]
        ]
        if cmd[1] == "train.py":
            run_dir = tmp_path / f"run{n}"
            args += ["trainer.max_epochs=2", "trainer.min_epochs=1", "logger=csv", f"hydra.run.dir={run_dir}"]
        else:
            args = [f"ckpt_path={ckpt}" if a.startswith("ckpt_path=") else a for a in args]
        r = run_cli(*args)
        assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stderr[-2000:]}"
        if cmd[1] == "train.py":
            ckpt = run_dir / "checkpoints" / "last.ckpt"
            assert ckpt.exists()
        else:  # predict for the first file's text id: ten lines of its products
            assert "top 10 unseen items for user A2SUAM1J3GNN3B" in r.stdout
            assert len(set(re.findall(r"\bB\d{9}\b", r.stdout))) == 10


GUIDE_ROW = re.compile(r"^\| (?P<family>[^|]+?) \| [^|]* \| (?P<files>[^|]+?) \| (?P<total>[\d,]+) \|$", re.M)
FILE = re.compile(r"`(?P<path>[\w./]+\.py)` (?P<n>[\d,]+)")


def test_the_reading_guide_counts_are_true():
    """Each family's own files, and the core every family shares, have the lines README says; the collab
    path, core included, stays at most 1,400 lines."""
    rows = {r["family"]: r for r in GUIDE_ROW.finditer(section("Reading guide"))}
    assert {"core (every family)", "collaborative filtering (ratings)", "top-N ranker", "character RNNs"} <= set(rows)
    core = None
    for family, row in rows.items():
        files = list(FILE.finditer(row["files"]))
        assert files, family
        own = 0
        for f in files:
            lines = len((ROOT / f["path"]).read_text().splitlines())
            assert lines == int(f["n"].replace(",", "")), f"{f['path']}: README says {f['n']}, it has {lines}"
            own += lines
        core = own if core is None else core  # the first row is the core
        expected = own if family == "core (every family)" else core + own
        assert int(row["total"].replace(",", "")) == expected, family
    assert int(rows["collaborative filtering (ratings)"]["total"].replace(",", "")) <= 1400
    for f in re.finditer(r"^- `(?P<path>[\w./]+\.py)` \((?P<n>\d+) lines\)", section("Reading guide"), re.M):
        assert len((ROOT / f["path"]).read_text().splitlines()) == int(f["n"]), f["path"]
