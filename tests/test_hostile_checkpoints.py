"""A checkpoint is someone else's file: nothing stored in it may choose code to run. Crafted checkpoints
(plain containers, so they pass torch's weights_only unpickler) are refused by every command that
rebuilds things from one, with one `error:` line, exit status 2 and no file written."""

from __future__ import annotations

import copy
import importlib

import pytest
import torch

from emblab.core import cli
from emblab.core.errors import EmblabError
from emblab.train import main, train
from emblab.training.loading import build_datamodule, checked_meta, load_checkpoint

from conftest import FAST, compose_cfg, run_cli


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A real collab checkpoint (a few batches on embedded ml-100k) and its contents."""
    out = tmp_path_factory.mktemp("good")
    train(compose_cfg(["debug=limit", "logger=csv", "trainer.max_epochs=1", "~callbacks.progress_bar"], out))
    path = out / "checkpoints" / "last.ckpt"
    return path, torch.load(path, weights_only=True)


def nested_target(victim):
    return {"_target_": "pathlib.Path.touch", "self": str(victim)}


def savetxt(victim):
    return {"_target_": "numpy.savetxt", "fname": str(victim), "X": [[1.0]]}


# name -> how to corrupt a (deep-copied) checkpoint dict so that a careless loader would write `victim`
CRAFTS = {
    "nested _target_ in data config": lambda c, v: c["emblab"]["data_config"].update(root=nested_target(v)),
    "deep _target_ in data config": lambda c, v: c["emblab"]["data_config"].update(x={"y": [savetxt(v)]}),
    "top-level _target_ in data config": lambda c, v: c["emblab"].update(data_config=savetxt(v)),
    "_target_ in hyperparameters": lambda c, v: c["hyper_parameters"].update(optim=savetxt(v)),
    "_partial_ in hyperparameters": lambda c, v: c["hyper_parameters"].update(optim={"_partial_": True}),
    "interpolation in data config": lambda c, v: c["emblab"]["data_config"].update(root="${oc.env:HOME}"),
    "_target_ in artifacts": lambda c, v: c["emblab"]["data"].update(extra=savetxt(v)),
    "foreign model class": lambda c, v: c["emblab"].update(model_class="numpy.savetxt"),
    "model class outside the allow-list": lambda c, v: c["emblab"].update(model_class="emblab.models.base.torch.save"),
    "data kind of another family": lambda c, v: c["emblab"].update(data_kind="text"),
    "a dict as model class": lambda c, v: c["emblab"].update(model_class={"_target_": "os.system"}),
    "a list as data module name": lambda c, v: c["emblab"]["data_config"].update(_target_=["numpy.savetxt"]),
}


def craft(good, tmp_path, name):
    path, ckpt = good
    bad = copy.deepcopy(ckpt)
    victim = tmp_path / "victim.txt"
    CRAFTS[name](bad, victim)
    out = tmp_path / "bad.ckpt"
    torch.save(bad, out)
    return out, victim


# every command that rebuilds something from a checkpoint: (module, body, extra args)
COMMANDS = {
    "eval": ("emblab.eval", "evaluate", []),
    "interpret": ("emblab.interpret", "interpret", []),
    "predict": ("emblab.predict", "run", ["user=196"]),
    "generate": ("emblab.generate", "run", []),
    "embeddings": ("emblab.embeddings", "run", []),
    "rossmann_submit": ("emblab.rossmann_submit", "run", []),
}


def run_command(name, ckpt, tmp_path, capsys):
    module, body, extra = COMMANDS[name]
    mod = importlib.import_module(module)
    out_arg = (
        [f"out={tmp_path / 'out'}"] if any(f.name == "out" for f in mod.Args.__dataclass_fields__.values()) else []
    )
    with pytest.raises(SystemExit) as e:
        cli.main(mod.Args, getattr(mod, body), [f"ckpt_path={ckpt}", *extra, *out_arg])
    return e.value.code, capsys.readouterr().err


@pytest.mark.parametrize("crafted", sorted(CRAFTS))
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_refuses_a_crafted_checkpoint(good, tmp_path, capsys, command, crafted):
    bad, victim = craft(good, tmp_path, crafted)
    code, err = run_command(command, bad, tmp_path, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    assert not victim.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "crafted", ["nested _target_ in data config", "foreign model class", "_target_ in hyperparameters"]
)
def test_resume_refuses_a_crafted_checkpoint(good, tmp_path, capsys, crafted):
    bad, victim = craft(good, tmp_path, crafted)
    cfg = compose_cfg([*FAST, f"ckpt_path={bad}"], tmp_path / "run")
    with pytest.raises(SystemExit) as e:
        main(cfg)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert not victim.exists()


def test_resume_refuses_another_family_checkpoint(good, tmp_path, capsys):
    cfg = compose_cfg(["model=char_rnn", *FAST, f"ckpt_path={good[0]}"], tmp_path / "run")
    with pytest.raises(SystemExit):
        main(cfg)
    assert "holds a CollabModel, this config trains a CharModel" in capsys.readouterr().err


@pytest.mark.integration
def test_the_exploit_of_issue_12_writes_nothing(good, tmp_path):
    """The reported attack, end to end in a fresh process: eval would have called numpy.savetxt."""
    bad, victim = craft(good, tmp_path, "deep _target_ in data config")
    res = run_cli("-m", "emblab.eval", f"ckpt_path={bad}")
    assert res.returncode == 2 and not victim.exists(), res.stderr[-2000:]
    assert res.stderr.strip().splitlines() == [res.stderr.strip()] and "may not name code" in res.stderr


def test_a_good_checkpoint_still_loads_and_builds_its_data(good):
    path, _ = good
    ckpt = load_checkpoint(path)
    meta = checked_meta(path, ckpt)
    dm = build_datamodule(path, meta)
    assert type(dm).__name__ == "InteractionsDataModule"
    with pytest.raises(EmblabError, match=r"data\._target_: a checkpoint may not name code"):
        build_datamodule(path, meta, {"_target_": "os.system"})


@pytest.mark.parametrize(
    "content, says",
    [
        (b"", "is empty"),
        (b"user,item,rating\n1,2,3\n", "is not a torch checkpoint"),
        (b"PK\x03\x04 truncated zip", "is not a readable checkpoint"),
        (b"\x80\x02 truncated pickle", "is not a readable checkpoint"),
    ],
)
def test_files_that_are_not_checkpoints(tmp_path, content, says):
    path = tmp_path / "x.ckpt"
    path.write_bytes(content)
    with pytest.raises(EmblabError, match=says):
        load_checkpoint(path)


def test_refusal_names_the_global_and_never_suggests_turning_the_check_off(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (print, ("ran",))

    path = tmp_path / "bad.ckpt"
    torch.save({"x": Exploit()}, path)
    with pytest.raises(EmblabError) as e:
        load_checkpoint(path)
    assert "the global print" in str(e.value) and "weights_only=False" not in str(e.value)
