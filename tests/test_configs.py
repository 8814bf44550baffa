"""Every config composes, every model brings its data, and wrong configs fail in one readable line."""

from __future__ import annotations

import hydra
import pytest

from emblab.core.errors import ConfigError
from emblab.core.settings import checked
from emblab.training.build import trainer_kwargs
from emblab.training.config import Trainer, check_compatible

from conftest import CONF, ROOT, compose_cfg, model_names, run_cli


@pytest.mark.parametrize("model", model_names())
def test_every_model_composes_with_its_own_data(model, tmp_path):
    cfg = compose_cfg([f"model={model}"], tmp_path)
    dm_cls = hydra.utils.get_class(cfg.data._target_)
    model_cls = hydra.utils.get_class(cfg.model._target_)
    assert model_cls.data_kind in (dm_cls.kinds or (dm_cls.kind,)), f"model={model} brought data {cfg.data._target_}"


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")))
def test_every_experiment_composes(experiment, tmp_path):
    cfg = compose_cfg([f"experiment={experiment}"], tmp_path)
    assert cfg.task_name == experiment
    hydra.utils.get_class(cfg.model._target_)
    hydra.utils.get_class(cfg.data._target_)


@pytest.mark.parametrize("group", ["trainer", "logger", "callbacks", "debug"])
def test_every_option_of_a_group_composes(group, tmp_path):
    """Each option composes, every class it names exists, and every value fits its constructor's types."""
    from omegaconf import DictConfig

    from emblab.training.config import check_config

    options = sorted(p.stem for p in (CONF / group).glob("*.yaml"))
    assert options
    for option in options:
        cfg = compose_cfg([f"{group}={option}"], tmp_path)
        node = cfg.get(group)
        targets = [
            n["_target_"]
            for n in (node.values() if isinstance(node, DictConfig) else [])
            if isinstance(n, DictConfig) and "_target_" in n
        ]
        for target in targets + ([node._target_] if isinstance(node, DictConfig) and "_target_" in node else []):
            assert hydra.utils.get_class(target)
        check_config(cfg)  # raises on a value its class does not take


def test_incompatible_model_and_data_is_one_line_error():
    class TextModel:
        data_kind = "text"

    class RatingsData:
        kind = "ratings"

    with pytest.raises(ConfigError, match=r"model=char_rnn trains on text data, but data=movielens provides ratings"):
        check_compatible(TextModel, RatingsData, {"model": "char_rnn", "data": "movielens"})


def test_gpus_flag_translates(tmp_path):
    cfg = compose_cfg(["trainer.gpus=0"], tmp_path)
    kw = trainer_kwargs(checked(Trainer, cfg.trainer, "trainer"))
    assert kw["accelerator"] == "cpu" and "gpus" not in kw


@pytest.mark.integration
def test_gpus_flag_without_gpu_exits_with_one_line():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU; the missing-GPU message cannot be provoked")
    res = run_cli("train.py", "trainer.gpus=1", "hydra.run.dir=/tmp/emblab-test-gpus")
    assert res.returncode != 0
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: this config asks for a GPU"), res.stderr[-2000:]
    assert "Traceback" not in res.stderr


@pytest.mark.integration
def test_unknown_key_fails_readably():
    res = run_cli("train.py", "model.n_factorz=3")
    assert res.returncode != 0
    assert "n_factorz" in res.stderr and "Traceback" not in res.stderr


def test_train_py_is_thin():
    assert len((ROOT / "train.py").read_text().splitlines()) < 20


def data_names() -> list[str]:
    return sorted(p.stem for p in (CONF / "data").glob("*.yaml"))


@pytest.mark.parametrize("model", model_names())
@pytest.mark.parametrize("data", data_names())
def test_every_model_data_pair_composes_or_fails_in_one_line(model, data, tmp_path):
    from hydra.errors import HydraException

    from emblab.training.config import compose_and_check

    try:
        cfg = compose_cfg([f"model={model}", f"data={data}"], tmp_path)
    except HydraException:  # the model's recipe sets a key that data has not (model=tabular, data=movielens)
        with pytest.raises(ConfigError) as e:
            compose_and_check([f"model={model}", f"data={data}", f"hydra.run.dir={tmp_path}"])
        assert "set by conf/recipe/" in str(e.value) and "\n" not in str(e.value)
        return
    model_cls = hydra.utils.get_class(cfg.model._target_)
    dm_cls = hydra.utils.get_class(cfg.data._target_)
    if model_cls.data_kind in (dm_cls.kinds or (dm_cls.kind,)):
        check_compatible(model_cls, dm_cls, {"model": model, "data": data})
    else:
        with pytest.raises(ConfigError) as e:
            check_compatible(model_cls, dm_cls, {"model": model, "data": data})
        assert f"model={model} trains on" in str(e.value) and "\n" not in str(e.value)


def test_a_local_config_is_read_when_present(tmp_path):
    """conf/local/default.yaml (git-ignored) holds one machine's settings; composing works without it."""
    local = CONF / "local" / "default.yaml"
    if local.exists():
        pytest.skip(f"{local} exists on this machine: not touching a user's own settings")
    assert compose_cfg([], tmp_path).seed == 42
    local.parent.mkdir(exist_ok=True)
    try:
        local.write_text("# @package _global_\nseed: 7\n")
        assert compose_cfg([], tmp_path).seed == 7
    finally:
        local.unlink()
        if not any(local.parent.iterdir()):
            local.parent.rmdir()
