"""Bad input ends in one `error:` line naming the file (line, column) or the config key, exit status 2 and
no traceback; what is handled instead of refused is counted in the log. In-process: each case composes
the real config (or calls the real command) and runs it as `python train.py ...` would."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from emblab.core import cli
from emblab.core.errors import DataError
from emblab.train import main
from emblab.training.config import check_command_line

from conftest import compose_cfg

QUIET = [
    "logger=csv",
    "~callbacks.progress_bar",
    "~callbacks.model_summary",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=2",
]
RATINGS_HEADER = "userId,movieId,rating,timestamp\n"


def ratings_dir(tmp_path, body: bytes | str, header: str = RATINGS_HEADER, movies: bool = True):
    """A folder laid out like ml-latest-small: ratings.csv (+ movies.csv)."""
    d = tmp_path / "ml"
    d.mkdir(exist_ok=True)
    raw = body if isinstance(body, bytes) else body.encode()
    (d / "ratings.csv").write_bytes(header.encode() + raw)
    if movies:
        (d / "movies.csv").write_text("movieId,title,genres\n" + "".join(f"{i},Film {i},x\n" for i in range(1, 60)))
    return d


def root(tmp_path, body, **kw) -> str:
    return f"data.root={ratings_dir(tmp_path, body, **kw)}"


def many_ratings(n: int = 200) -> str:
    return "".join(f"{1 + i % 20},{1 + (i * 7) % 50},{1 + i % 5}.0,{1000 + i}\n" for i in range(n))


def table(tmp_path, rows: list[str] | None = None, name: str = "t.csv"):
    """A small table a,x,y,d (category, continuous, target, date), with rows replaced where given."""
    lines = [f"{'pqr'[i % 3]},{i / 10:.2f},{1 + (i % 7)},2020-01-{1 + i % 28:02d}" for i in range(120)]
    for i, row in enumerate(rows or []):
        if row is not None:
            lines[i] = row
    path = tmp_path / name
    path.write_text("a,x,y,d\n" + "\n".join(lines) + "\n")
    return path


TAB = ["model=mixed_input", "data=tabular", "data.target=y", "data.cat_cols=[a]", "data.cont_cols=[x]"]


def one_error(capsys, fn) -> str:
    """Run fn, which must exit 2 printing exactly one line, `error: ...`, and no traceback."""
    with pytest.raises(SystemExit) as e:
        fn()
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert e.value.code == 2, err
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def train_error(capsys, tmp_path, overrides: list[str]) -> str:
    cfg = compose_cfg([*QUIET, *overrides], tmp_path / "run")
    return one_error(capsys, lambda: main(cfg))


# ---------------------------------------------------------------- training: data files and config values
TRAIN_CASES = {
    "ratings: a latin-1 byte": (
        lambda t: [root(t, b"1,2,3.5,100\n2,3,4\xe9,200\n")],
        r"ratings.csv, line 3: not UTF-8",
    ),
    "ratings: a header only": (lambda t: [root(t, "")], r"ratings.csv: holds no interactions \(a header only\)"),
    "ratings: too few to split": (
        lambda t: [root(t, "1,2,3.5,100\n2,3,4,200\n")],
        r"2 interactions leave nothing to validate on",
    ),
    "ratings: a blank id": (
        lambda t: [root(t, many_ratings() + " ,3,4,200\n")],
        r"line 202, column 'userId': a blank user id",
    ),
    "ratings: a rating inf": (
        lambda t: [root(t, many_ratings() + "1,3,inf,200\n")],
        r"line 202, column 'rating': rating inf is not a finite number",
    ),
    "ratings: a rating past float32": (
        lambda t: [root(t, many_ratings() + "1,3,1e39,200\n")],
        r"line 202, column 'rating': rating 1e39 is beyond float32's range",
    ),
    "ratings: a rating nan": (lambda t: [root(t, many_ratings() + "1,3,nan,200\n")], r"line 202, column 'rating'"),
    "ratings: a missing field": (lambda t: [root(t, many_ratings() + "1,3\n")], r"line 202: expected 4 fields"),
    "ratings: duplicates policy misspelt": (lambda t: ["data.duplicates=lats"], r"data.duplicates='lats'"),
    "text: 3 characters": (
        lambda t: ["model=char_rnn", "data=text", "data.path=" + str(_write(t / "x.txt", "abc"))],
        r"the text \(3 characters\) is too short",
    ),
    "text: not UTF-8": (
        lambda t: ["model=char_rnn", "data=text", "data.path=" + str(_write(t / "x.txt", b"ab\xffcdefghijkl" * 9))],
        r"x.txt, line 1: not UTF-8",
    ),
    "tabular: no data.path": (lambda t: [*TAB], r"data.path is required"),
    "tabular: cutoff leaves validation empty": (
        lambda t: [*TAB, f"data.path={table(t)}", "data.split=cutoff", "data.date_col=d", "data.cutoff=2030-01-01"],
        r"validation \(or test\) split is empty",
    ),
    "tabular: inf in a continuous column": (
        lambda t: [*TAB, f"data.path={table(t, [None, 'p,inf,3,2020-01-02'])}"],
        r"t.csv, line 3, column 'x': inf is not a finite number",
    ),
    "tabular: 1e400 in a continuous column": (
        lambda t: [*TAB, f"data.path={table(t, [None, None, 'q,1e400,3,2020-01-02'])}"],
        r"line 4, column 'x': inf is not a finite number",
    ),
    "tabular: a word in a numeric target": (
        lambda t: [*TAB, "data.task=regression", f"data.path={table(t, [None, None, 'p,0.1,seven,2020-01-02'])}"],
        r"line 4, column 'y': 'seven' is not a number",
    ),
    "tabular: a field too many": (
        lambda t: [*TAB, f"data.path={table(t, [None, None, None, 'p,0.1,3,2020-01-02,9'])}"],
        r"t.csv, line 5: Expected 4 fields",
    ),
    "tabular: a missing column": (
        lambda t: [*TAB[:-1], "data.cont_cols=[z]", f"data.path={table(t)}"],
        r"t.csv, line 1: missing column\(s\) \['z'\]",
    ),
    "char model and data disagree on cs": (
        lambda t: ["model=char_rnn", "data.cs=5"],
        r"model.cs=8 but the data is cut for cs=5 \(data.cs\)",
    ),
    "trainer.max_epochs=abc": (lambda t: ["trainer.max_epochs=abc"], r"trainer.max_epochs='abc': expected"),
    "model.optim.lr=-1": (lambda t: ["model.optim.lr=-1"], r"model.optim.lr=-1.0: expected a number > 0"),
    "model.n_factors=0": (lambda t: ["model.n_factors=0"], r"model.n_factors=0: expected an integer >= 1"),
    "model.emb_drop=1.5": (lambda t: ["model=collab_nn", "model.emb_drop=1.5"], r"model.emb_drop=1.5"),
    "data.batch_size=0": (lambda t: ["data.batch_size=0"], r"data.batch_size=0: expected an integer >= 1"),
    "data.batch_size=-1": (lambda t: ["data.batch_size=-1"], r"data.batch_size=-1"),
    "a key the data module does not take": (lambda t: ["+data.bogus=1"], r"data.bogus: no such setting"),
    "optimized_metric misspelt": (
        lambda t: ["optimized_metric=val/rmes"],
        r"logs no such metric \(did you mean val/rmse",
    ),
    "a GPU asked for, none here": (lambda t: ["trainer.gpus=1"], r"asks for a GPU but torch sees none"),
    # round 3: values each config checks before any work, from one declaration of their range
    "clipping below zero": (lambda t: ["trainer.gradient_clip_val=-1"], r"trainer.gradient_clip_val=-1.0: expected"),
    "an empty y_range": (lambda t: ["model.y_range=[3,3]"], r"model.y_range=\[3.0, 3.0\]: expected \[lo, hi\]"),
    "a negative validation fraction": (lambda t: ["data.val_frac=-0.5"], r"data.val_frac=-0.5: expected a number in"),
    "zero torch threads": (lambda t: ["torch_threads=0"], r"torch_threads=0: expected an integer >= 1"),
    "a negative seed": (lambda t: ["seed=-1"], r"seed=-1: expected an integer >= 0"),
    "negative devices": (lambda t: ["trainer.devices=-5"], r"trainer.devices=-5: expected a count"),
    "epochs without end": (lambda t: ["trainer.max_epochs=-1"], r"trainer.max_epochs=-1 trains without end"),
    "a batch 3 processes cannot share": (
        lambda t: ["trainer=ddp_cpu", "trainer.devices=3"],
        r"data.batch_size=64 is not a multiple of the 3 processes",
    ),
    "dropouts for other layers": (
        lambda t: ["model=collab_nn", "model.dropout=[0.1,0.2]"],
        r"model.dropout has 2 values for 1 hidden layers",
    ),
    "a table too big to fit": (lambda t: ["model.n_factors=100000000"], r"parameters: .* GiB, more than"),
    "tabular: the target as an input": (
        lambda t: [*TAB[:-1], "data.cont_cols=[x,y]", f"data.path={table(t)}"],
        r"data.target=y is also an input \(data.cont_cols\)",
    ),
    "tabular: log target of a classification": (
        lambda t: [*TAB, "data.task=classification", "data.log_target=true", f"data.path={table(t)}"],
        r"data.log_target=true is for a regression target",
    ),
    "tabular: a column named twice in the header": (
        lambda t: [*TAB, f"data.path={_write(t / 'd.csv', 'a,x,y,x' + chr(10) + 'p,1,2,3' + chr(10) * 2)}"],
        r"d.csv, line 1: column 'x' appears 2 times in the header \(columns 2, 4\)",
    ),
    "tabular: a row with more fields than the header": (
        # on the first row pandas would take the extra field for an index column (on a later row it errs itself)
        lambda t: [*TAB, f"data.path={_write(t / 'f.csv', chr(10).join(['a,x,y', 'p,1,2,5', 'q,3,4,6', '']))}"],
        r"f.csv, line 2: has more fields than its header's 3 columns",
    ),
    "tabular: a header and no rows": (
        lambda t: [*TAB, f"data.path={_write(t / 'e.csv', 'a,x,y' + chr(10))}"],
        r"e.csv: has a header \(3 columns\) but no rows",
    ),
    "tabular: one class to classify": (
        lambda t: [*TAB, "data.task=classification", f"data.path={table(t, ['p,0.1,1,2020-01-02'] * 120)}"],
        r"the target has one class",
    ),
    "a training loss that turns inf": (
        lambda t: [
            *TAB,
            f"data.path={table(t, [f'p,0.1,{1e30 + i},2020-01-02' for i in range(120)])}",
            "data.y_range=null",
            "data.split=random",
        ],
        r"train/loss became inf",
    ),
}


def _write(path, content):
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    return path


@pytest.mark.parametrize("case", sorted(TRAIN_CASES))
def test_train_refuses_in_one_line(case, tmp_path, capsys):
    overrides, says = TRAIN_CASES[case]
    args = overrides(tmp_path)
    if any(a.startswith("data.root=") for a in args):
        args = ["data.source=ml-latest-small", *args]
    line = train_error(capsys, tmp_path, args)
    import re

    assert re.search(says, line), line


def test_checks_come_before_work(tmp_path, capsys):
    """A wrong optimized_metric, duplicates policy or GPU request is caught before any training."""
    for bad in (["optimized_metric=val/nothing"], ["trainer.gpus=1"], ["data.duplicates=x"]):
        train_error(capsys, tmp_path, bad)
        assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "run" / "csv").exists()


# ---------------------------------------------------------------- the command line itself (before Hydra)
@pytest.mark.parametrize(
    "argv, says",
    [
        (["model.n_factor=5"], "model.n_factor: no such key (did you mean n_factors?)"),
        (["model=nope"], "model=nope: no such model config"),
        (["model=colab"], "(did you mean collab"),
        (["trainer=gpux"], "trainer=gpux: no such trainer config"),
        (["-m", "model.n_factor=5,10"], "model.n_factor: no such key"),
        (["model.n_factors=5,"], "error: "),
        (["data.batch_size=abc"], "data.batch_size='abc': expected an integer"),
        (["model.n_factors=1.5"], "model.n_factors='1.5': expected an integer"),
    ],
)
def test_command_line_errors_are_one_line_with_the_closest_choice(argv, says, capsys):
    assert says in one_error(capsys, lambda: check_command_line(argv))


def test_valid_command_lines_pass_the_check():
    for argv in (
        ["model=char_rnn", "trainer.gpus=1"],
        ["-m", "model.n_factors=5,10"],
        ["experiment=collab_ml100k"],
        ["+trainer.detect_anomaly=true"],
        ["--cfg", "job"],
    ):
        check_command_line(argv)  # no SystemExit


def test_an_unwritable_output_folder_is_refused_first(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert "is not a folder" in one_error(capsys, lambda: check_command_line([f"hydra.run.dir={blocker}/run"]))


# ---------------------------------------------------------------- the small commands
@pytest.fixture(scope="module")
def collab_ckpt(tmp_path_factory):
    from emblab.train import train

    out = tmp_path_factory.mktemp("ckpt")
    train(compose_cfg([*QUIET], out))
    return out / "checkpoints" / "last.ckpt"


def command_error(capsys, module: str, argv: list[str]) -> str:
    import importlib

    mod = importlib.import_module(module)
    body = next(getattr(mod, n) for n in ("evaluate", "interpret", "run") if hasattr(mod, n))
    return one_error(capsys, lambda: cli.main(mod.Args, body, argv))


@pytest.mark.parametrize(
    "module, argv, says",
    [
        ("emblab.predict", ["user=196", "k=-3"], "k=-3: expected an integer >= 1"),
        ("emblab.predict", ["user=196", "k=0"], "k=0"),
        ("emblab.predict", ["user=196", "item=242", "k=5"], "not both"),
        ("emblab.predict", ["user=abc"], "error: "),
        ("emblab.predict", ["usr=196"], "unknown key 'usr' (did you mean user"),
        ("emblab.generate", ["temperature=-1"], "temperature=-1.0: expected a number >= 0"),
        ("emblab.generate", ["n=-5"], "n=-5"),
        ("emblab.eval", ["split=train"], "split='train': expected one of val, test"),
        ("emblab.eval", ["torch_threads=0"], "torch_threads=0"),
    ],
)
def test_command_values_are_checked(collab_ckpt, module, argv, says, capsys):
    assert says in command_error(capsys, module, [f"ckpt_path={collab_ckpt}", *argv])


def test_a_zero_byte_checkpoint(tmp_path, capsys):
    empty = tmp_path / "x.ckpt"
    empty.write_bytes(b"")
    assert "is empty (0 bytes)" in command_error(capsys, "emblab.eval", [f"ckpt_path={empty}"])


def test_prompts_are_text_never_yaml():
    from emblab.generate import Args

    for typed in ("no", "0123", "1e3", "KING:", "null", "[a, b]"):
        assert cli.parse(Args, ["ckpt_path=x.ckpt", f"prompt={typed}"]).prompt == typed


def test_vocabulary_size_in_the_error_counts_every_character():
    from emblab.core.errors import EmblabError
    from emblab.data.text import encode

    with pytest.raises(EmblabError, match=r"\(3 characters\)"):
        encode("z", {"a": 1, "b": 2, "c": 3})


def test_commands_take_torch_threads(collab_ckpt, tmp_path):
    from emblab.eval import Args, evaluate

    before = torch.get_num_threads()
    try:
        cli.main(Args, evaluate, [f"ckpt_path={collab_ckpt}", "torch_threads=1", f"out={tmp_path / 'e.json'}"])
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------- handled, and counted
def test_bom_in_a_header_is_read(tmp_path, capsys):
    from emblab.data.movielens import RATINGS_CSV
    from emblab.data.reader import read_frame
    from emblab.data.tabular import read_table

    d = ratings_dir(tmp_path, many_ratings(), header="\ufeff" + RATINGS_HEADER)
    assert len(read_frame(d / "ratings.csv", RATINGS_CSV)) == 200
    path = tmp_path / "b.csv"
    path.write_bytes("\ufeffa,x\np,1\n".encode())
    assert list(read_table(path, ["a", "x"]).columns) == ["a", "x"]


def test_ratings_without_titles_train_with_ids_as_titles(tmp_path, caplog):
    from emblab.data.interactions import InteractionsDataModule

    d = ratings_dir(tmp_path, many_ratings(), movies=False)
    dm = InteractionsDataModule.of(source="ml-latest-small", root=str(d), download=False)
    with caplog.at_level(logging.WARNING):
        dm.setup()
    assert dm.titles[0] == f"item {int(dm.item_ids[0])}"
    assert "no movies.csv" in caplog.text and "labelled by their ids" in caplog.text


def test_categories_and_ids_unseen_in_training_are_counted(tmp_path, caplog):
    from emblab.data.tabular import TabularDataModule

    rows = [f"new{i},0.1,3,2030-01-0{1 + i}" for i in range(3)]  # only in the validation window
    path = table(tmp_path, rows)
    dm = TabularDataModule.of(
        path=str(path), cat_cols=["a"], cont_cols=["x"], target="y", split="cutoff", date_col="d", cutoff="2030-01-01"
    )
    with caplog.at_level(logging.WARNING):
        dm.setup()
    assert dm.unseen_counts() == {"validation": {"a": 3}}
    assert "values never seen in training" in caplog.text and "a 3 rows" in caplog.text


def test_rows_without_a_target_are_left_out_and_counted(tmp_path, caplog):
    """R writes NA for a missing number, a spreadsheet leaves it blank: those rows cannot train, the rest do;
    an error after them still names the file's own line."""
    from emblab.data.tabular import TabularDataModule

    path = table(tmp_path, ["p,0.1,NA,2020-01-02", "q,0.2,,2020-01-03", None, "r,0.3,nan,2020-01-04"])
    dm = TabularDataModule.of(path=str(path), target="y", task="auto", split="random")
    with caplog.at_level(logging.WARNING):
        dm.setup()
    assert dm.task == "classification" and dm.target_classes == [str(k) for k in range(1, 8)]
    assert len(dm.train_ds) + len(dm.val_ds) == 117
    assert "3 of 120 rows have no target y (first at line 2): left out" in caplog.text
    bad = table(tmp_path, ["p,0.1,NA,2020-01-02", None, None, None, "p,x,3,2020-01-02"], name="b.csv")
    dm = TabularDataModule.of(path=str(bad), target="y", cat_cols=["a"], cont_cols=["x"])
    with pytest.raises(DataError, match=r"b.csv, line 6, column 'x': 'x' is not a number"):
        dm.setup()


def test_a_class_training_never_holds_is_left_out_of_validation(tmp_path, caplog):
    """A rare class the random split put in validation only has no output to score: its rows are left out of
    validation, counted, and the run goes on."""
    from emblab.data.tabular import TabularDataModule, read_table, split_mask

    path = table(tmp_path)
    dm0 = TabularDataModule.of(path=str(path), target="y", task="classification", split="random")
    dm0.setup()
    is_val = split_mask(read_table(path), path, "random", dm0.cfg.val_frac, dm0.cfg.split_seed, None, None, None, None)
    val_row = int(np.flatnonzero(is_val)[0])
    path = table(tmp_path, [None] * val_row + ["p,0.1,99,2020-01-02"])
    dm = TabularDataModule.of(path=str(path), target="y", task="classification", split="random")
    with caplog.at_level(logging.WARNING):
        dm.setup()
    assert "99" not in dm.target_classes and len(dm.val_ds) == len(dm0.val_ds) - 1
    assert f"1 validation rows of classes the training rows never hold ('99' 1; first at line {val_row + 2})" in (
        caplog.text
    )


def test_eval_writes_the_unseen_count(collab_ckpt, tmp_path):
    from emblab.eval import Args, evaluate

    out = tmp_path / "e.json"
    cli.main(Args, evaluate, [f"ckpt_path={collab_ckpt}", f"out={out}"])
    assert "unseen_in_training" in json.loads(out.read_text())


def test_a_checkpoint_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    """A full disk mid-write (fault-injected) leaves the earlier checkpoint intact and no temporary file."""
    import errno

    from emblab.training.checkpoint import AtomicCheckpointIO

    io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"w": torch.ones(3)}, path)
    real_save = torch.save

    def full_disk(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError):
        io.save_checkpoint({"w": torch.zeros(3)}, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_a_full_disk_is_the_users_error(tmp_path):
    import errno

    from emblab.core.errors import find_user_error

    err = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.ckpt"))
    assert find_user_error(RuntimeError("a bug")) is None
    wrapped = RuntimeError("while saving")
    wrapped.__cause__ = err
    said = str(find_user_error(wrapped))
    assert said.startswith(f"{tmp_path / 'x.ckpt'}: No space left on device")
    assert said.endswith("(files written before, the last checkpoint included, are intact)")


def test_a_read_only_output_folder_is_refused_first(tmp_path, capsys, monkeypatch):
    from emblab.training import config as config_check

    monkeypatch.setattr(config_check, "read_only_fs", lambda path: True)  # as on a read-only mount
    assert "is not writable" in one_error(capsys, lambda: check_command_line([f"hydra.run.dir={tmp_path}/run"]))


def test_a_full_output_folder_mid_run_is_one_line(tmp_path, capsys, monkeypatch):
    import errno

    import emblab.train

    def full(cfg, out_dir):
        raise OSError(errno.ENOSPC, "No space left on device", str(out_dir / "config.yaml"))

    monkeypatch.setattr(emblab.train, "save_config", full)
    line = train_error(capsys, tmp_path, [])
    assert "config.yaml: No space left on device" in line and line.endswith("are intact)")
