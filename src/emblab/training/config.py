"""The config schema: every setting the project or Lightning reads, declared once (type, default, range).

Models and data declare theirs beside their classes (`Config`); here are the run's own settings and the
Lightning objects' (trainer, callbacks, loggers). Hydra checks keys and types of the model, data and
top-level settings as it composes the config (the dataclasses are registered as schemas, conf/*.yaml
extend them); `check_config` checks every range and the trainer, callbacks and loggers before any work.
`check_command_line` composes the command line once before Hydra does, only to turn Hydra's multi-line
complaints (a misspelt key or group value) into one line that names the closest valid choice.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf, open_dict

from emblab.core.cli import fail
from emblab.core.errors import ConfigError, closest
from emblab.core.settings import checked, one_line, setting
from emblab.training.ddp import external_launcher

CONF = Path(__file__).resolve().parents[3] / "conf"


@dataclass
class Paths:
    root_dir: str = MISSING
    data_dir: str = MISSING
    log_dir: str = MISSING
    output_dir: str = MISSING  # this run's folder
    shared_dir: str | None = None  # the reference data (EMBLAB_SHARED_DIR)


@dataclass
class Run:
    """The top level of conf/train.yaml."""

    task_name: str = "train"
    tags: list[str] = setting([])
    seed: int | None = setting(42, ge=0)
    torch_threads: int | None = setting(None, ge=1)  # torch's intra-op CPU threads; null: torch's default
    train: bool = True
    test: bool = False
    wandb_watch: str | None = setting(None, choices=("gradients", "parameters", "all"))
    lr_find: str | None = setting(None, choices=("show", "apply"))
    lr_find_steps: int = setting(100, ge=2)
    ckpt_path: str | None = None
    sweep_name: str | None = None
    monitor: str = "val/loss"
    optimized_metric: str | None = None
    paths: Paths = setting(Paths())
    data: Any = None  # each group's own schema checks these
    model: Any = None
    trainer: Any = None
    callbacks: Any = None
    logger: Any = None


@dataclass
class Loop:
    """What training adds to every model's settings (emblab.training.steps)."""

    steps_per_call: int = setting(1, ge=1)


@dataclass
class Trainer:
    """Lightning's Trainer arguments emblab takes, with their ranges. `gpus` is Lightning 1.x's flag, kept."""

    _target_: str = "pytorch_lightning.Trainer"
    default_root_dir: str | None = None
    accelerator: str = setting("auto", choices=("auto", "cpu", "gpu", "cuda", "mps"))
    devices: Any = 1  # a count >= 1, -1 (all), "auto" or a list of device indices
    num_nodes: int = setting(1, ge=1)
    strategy: str = "auto"
    gpus: int | None = setting(None, ge=0)
    precision: str = setting(
        "32-true", choices=("32-true", "32", "16-mixed", "bf16-mixed", "64-true", "64", "bf16-true", "16-true")
    )
    min_epochs: int | None = setting(None, ge=0)
    max_epochs: int = setting(5, ge=-1)
    max_steps: int = setting(-1, ge=-1)
    max_time: str | None = None
    limit_train_batches: float | int | None = setting(None, ge=0)
    limit_val_batches: float | int | None = setting(None, ge=0)
    limit_test_batches: float | int | None = setting(None, ge=0)
    val_check_interval: float | int | None = setting(None, gt=0)
    check_val_every_n_epoch: int | None = setting(1, ge=1)
    num_sanity_val_steps: int = setting(2, ge=-1)
    log_every_n_steps: int = setting(50, ge=1)
    gradient_clip_val: float | None = setting(None, ge=0)
    gradient_clip_algorithm: str | None = setting(None, choices=("norm", "value"))
    accumulate_grad_batches: int = setting(1, ge=1)
    fast_dev_run: bool | int = setting(False, ge=0)
    overfit_batches: float | int = setting(0.0, ge=0)
    profiler: str | None = setting(None, choices=("simple", "advanced", "pytorch"))
    deterministic: bool | None = None
    benchmark: bool | None = None
    detect_anomaly: bool = False
    use_distributed_sampler: bool = False
    sync_batchnorm: bool = False
    enable_progress_bar: bool | None = None
    enable_model_summary: bool | None = None
    enable_checkpointing: bool | None = None
    reload_dataloaders_every_n_epochs: int = setting(0, ge=0)

    def check(self, prefix: str) -> None:
        d = self.devices
        ok = (
            d in ("auto", -1)
            or (isinstance(d, int) and not isinstance(d, bool) and d >= 1)
            or (isinstance(d, list) and d and all(isinstance(i, int) and i >= 0 for i in d))
        )
        if not ok:
            raise ConfigError(f"{prefix}.devices={d!r}: expected a count >= 1, -1 (all), auto or a list of indices")
        for key in ("limit_train_batches", "limit_val_batches", "limit_test_batches", "overfit_batches"):
            v = getattr(self, key)
            if isinstance(v, float) and v > 1:
                raise ConfigError(f"{prefix}.{key}={v}: a fraction is at most 1.0 (or give a whole number of batches)")
        if self.min_epochs is not None and self.max_epochs != -1 and self.min_epochs > self.max_epochs:
            raise ConfigError(f"{prefix}.min_epochs={self.min_epochs} is above max_epochs={self.max_epochs}")
        if self.max_epochs == -1 and self.max_steps == -1 and not self.max_time:
            raise ConfigError(f"{prefix}.max_epochs=-1 trains without end: set {prefix}.max_steps=N (optimizer steps)")
        if self.max_epochs == 0:
            raise ConfigError(f"{prefix}.max_epochs=0 trains nothing: expected 1 or more (or -1 with max_steps)")

    def world_size(self) -> int:
        if self.accelerator == "cpu" or self.gpus == 0:
            per_node = self.devices if isinstance(self.devices, int) and self.devices > 0 else 1
        elif self.gpus:
            per_node = self.gpus
        elif isinstance(self.devices, list):
            per_node = len(self.devices)
        else:
            per_node = self.devices if isinstance(self.devices, int) and self.devices > 0 else 1
        return per_node * self.num_nodes


@dataclass
class ModelCheckpoint:
    _target_: str = "emblab.training.callbacks.ModelCheckpoint"
    dirpath: str | None = None
    filename: str | None = None
    monitor: str | None = None
    mode: str = setting("min", choices=("min", "max"))
    save_last: bool = True
    save_top_k: int = setting(1, ge=-1)
    save_weights_only: bool = False
    auto_insert_metric_name: bool = True
    every_n_train_steps: int | None = setting(None, ge=1)  # optimizer steps
    every_n_epochs: int | None = setting(None, ge=1)
    verbose: bool = False


@dataclass
class MetricsSummary:
    _target_: str = "emblab.training.callbacks.MetricsSummary"
    path: str = MISSING


@dataclass
class RichProgressBar:
    _target_: str = "pytorch_lightning.callbacks.RichProgressBar"
    refresh_rate: int = setting(1, ge=0)
    leave: bool = False


@dataclass
class RichModelSummary:
    _target_: str = "pytorch_lightning.callbacks.RichModelSummary"
    max_depth: int = setting(1, ge=-1)


@dataclass
class LearningRateMonitor:
    _target_: str = "pytorch_lightning.callbacks.LearningRateMonitor"
    logging_interval: str | None = setting(None, choices=("step", "epoch"))
    log_momentum: bool = False


@dataclass
class TextSamples:
    _target_: str = "emblab.training.reports.TextSamples"


@dataclass
class EarlyStopping:
    _target_: str = "pytorch_lightning.callbacks.EarlyStopping"
    monitor: str = MISSING
    mode: str = setting("min", choices=("min", "max"))
    patience: int = setting(3, ge=1)  # validation runs without improvement
    min_delta: float = setting(0.0, ge=0)
    check_finite: bool = True
    verbose: bool = False


@dataclass
class RankingMetrics:
    _target_: str = "emblab.training.reports.RankingMetrics"
    k: int | None = setting(None, ge=1)
    relevant: float = 4.0


@dataclass
class CSVLogger:
    _target_: str = "pytorch_lightning.loggers.CSVLogger"
    save_dir: str = MISSING
    name: str | None = "csv"
    version: str | int | None = None
    flush_logs_every_n_steps: int = setting(100, ge=1)


@dataclass
class WandbLogger:
    _target_: str = "pytorch_lightning.loggers.WandbLogger"
    project: str | None = "emblab"
    name: str | None = None
    save_dir: str = "."
    group: str | None = None
    tags: list[str] | None = None
    mode: str = setting("offline", choices=("online", "offline", "disabled", "shared"))
    log_model: bool | str = False
    id: str | None = None
    entity: str | None = None
    resume: str | None = setting(None, choices=("allow", "must", "never", "auto"))


CALLBACKS = {
    c._target_: c
    for c in (
        ModelCheckpoint,
        MetricsSummary,
        RichProgressBar,
        RichModelSummary,
        LearningRateMonitor,
        TextSamples,
        RankingMetrics,
    )
}
LOGGERS = {c._target_: c for c in (CSVLogger, WandbLogger)}


def model_and_data_classes() -> tuple[dict[str, type], dict[str, type]]:
    from emblab.training.loading import data_classes, model_classes

    return model_classes(), data_classes()


def char_data_shape(arch: str) -> str:
    """How the text is cut for a char architecture (conf/data_base/text.yaml's data.shape follows model.arch)."""
    from emblab.nets.char import ARCH_SHAPE

    return ARCH_SHAPE.get(arch, "windows")  # an unknown arch is the model config's to refuse


def register() -> None:
    """The schemas Hydra checks as it composes: conf/train.yaml, conf/model/*.yaml and conf/data/*.yaml
    start their defaults with these (schema, schema/model/<name>, schema/data/<name>)."""
    OmegaConf.register_new_resolver("emblab.char_shape", char_data_shape, replace=True)
    cs = ConfigStore.instance()
    cs.store(name="schema", node=Run)
    models, datas = model_and_data_classes()
    for cls in {*models.values()}:
        loop = dataclass(type(cls.Config.__name__, (cls.Config, Loop), {}))
        cs.store(group="schema/model", name=cls.Config._target_.rsplit(".", 1)[-1], node=loop)
    for cls in {*datas.values()}:
        cs.store(group="schema/data", name=cls.Config._target_.rsplit(".", 1)[-1], node=cls.Config)


def _by_target(node, schemas: dict[str, type], where: str):
    """A callback's or logger's settings, checked against its class's schema (one we do not know: as given)."""
    target = node.get("_target_")
    if target in schemas:
        return checked(schemas[target], node, where)
    return OmegaConf.to_container(node, resolve=True)


def check_shares(data, world: int) -> None:
    """Each of `world` processes takes an equal share of a batch: the batch sizes divide by it."""
    for key in ("batch_size", "eval_batch_size"):
        size = getattr(data, key, None)
        if size and world > 1 and size % world:
            raise ConfigError(
                f"data.{key}={size} is not a multiple of the {world} processes it is split across "
                f"(each takes an equal share): use a multiple of {world}"
            )


def check_config(cfg: DictConfig) -> dict[str, Any]:
    """Every setting of the run checked (types, ranges, required values), before data loads or a GPU is looked
    for: {"run", "trainer", "model", "data", "callbacks", "loggers"} as checked objects."""
    models, datas = model_and_data_classes()
    top = {k: v for k, v in cfg.items() if k not in ("data", "model", "trainer", "callbacks", "logger", "hydra")}
    out = {"run": checked(Run, top, "")}
    out["trainer"] = checked(Trainer, cfg.trainer, "trainer")
    model_cls = next((c for c in models.values() if c.Config._target_ == cfg.model.get("_target_")), None)
    data_cls = next((c for c in datas.values() if c.Config._target_ == cfg.data.get("_target_")), None)
    if model_cls is None or data_cls is None:
        raise ConfigError(
            f"model._target_={cfg.model.get('_target_')} / data._target_={cfg.data.get('_target_')}: "
            "not one of emblab's model and data classes"
        )
    settings = OmegaConf.to_container(cfg.model, resolve=True)
    loop = checked(Loop, {"steps_per_call": settings.pop("steps_per_call", 1)}, "model")
    out["model"], out["steps_per_call"] = checked(model_cls.Config, settings, "model"), loop.steps_per_call
    out["model_cls"], out["data_cls"] = model_cls, data_cls
    out["data"] = checked(data_cls.Config, cfg.data, "data")
    check_shares(out["data"], out["trainer"].world_size())
    out["callbacks"] = {n: _by_target(c, CALLBACKS, f"callbacks.{n}") for n, c in (cfg.callbacks or {}).items() if c}
    out["loggers"] = {n: _by_target(c, LOGGERS, f"logger.{n}") for n, c in (cfg.logger or {}).items() if c}
    return out


# ---------------------------------------------------------------- the command line, in one line
_HYDRA_INFO_FLAGS = (
    "-h",
    "--help",
    "--hydra-help",
    "--info",
    "-i",
    "-c",
    "--cfg",
    "--resolve",
    "-p",
    "--package",
    "--shell-completion",
    "-sc",
    "--version",
    "-cp",
    "--config-path",
    "-cn",
    "--config-name",
    "-cd",
    "--config-dir",
    "--experimental-rerun",
)


def _runs(overrides: list[str]) -> list[list[str]]:
    """Single runs that together give every value of every sweep on the command line: the first value of each,
    then each other value of one sweep at a time (a range: its ends; an interval: its ends)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ValueType
    from hydra.errors import OverrideParseException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as e:
        raise ConfigError(str(e).strip().splitlines()[0]) from None
    fixed, sweeps = [], []
    for o in parsed:
        if not o.is_sweep_override():
            fixed.append(o.input_line)
            continue
        if o.value_type in (ValueType.CHOICE_SWEEP, ValueType.SIMPLE_CHOICE_SWEEP):
            values = [v for v in o.value().list if isinstance(v, (str, int, float, bool))]
        elif o.value_type == ValueType.RANGE_SWEEP:
            r = range(o.value().start, o.value().stop, o.value().step or 1)
            values = [r[0], r[-1]] if len(r) else []
        else:  # an interval
            values = [o.value().start, o.value().end]
        sweeps.append([f"{o.get_key_element()}={str(v).lower() if isinstance(v, bool) else v}" for v in values])
    first = [values[0] for values in sweeps if values]
    runs = [fixed + first]
    for i, values in enumerate(sweeps):
        runs += [fixed + [*first[:i], other, *first[i + 1 :]] for other in values[1:]]
    return runs


def check_command_line(argv: list[str]) -> None:
    """train.py's overrides compose and every setting is in range, each value of a sweep too; else one
    `error:` line naming the key (a misspelt one: with the closest valid key or choice), exit 2."""
    logging.getLogger("alembic").setLevel(logging.WARNING)  # Optuna's storage migrations log each step
    try:
        compose_and_check(argv)
    except ConfigError as e:
        fail(e)


def compose_and_check(argv: list[str]) -> None:
    """check_command_line's work: a ConfigError for the first setting out of place."""
    if any(a in _HYDRA_INFO_FLAGS or a.startswith(("--config", "--info")) for a in argv):
        return
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException, MissingConfigException

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            for overrides in _runs([a for a in argv if not a.startswith("-")]):
                try:
                    cfg = compose("train", overrides=overrides, return_hydra_config=True)
                except MissingConfigException as e:
                    raise ConfigError(_missing_group_message(e, overrides)) from None
                except HydraException as e:
                    raise ConfigError(_bad_key_message(e)) from None
                multirun = any(a in ("-m", "--multirun") for a in argv) or cfg.hydra.get("mode") == "MULTIRUN"
                if multirun and (launcher := external_launcher()):
                    # each rank would run the whole sweep, and the sweep's jobs would need one rendezvous each
                    # (Lightning-AI/pytorch-lightning#18175): one run per launch
                    raise ConfigError(
                        f"-m (a Hydra multirun) cannot run under {launcher}: launch one run at a time, or sweep "
                        "with Lightning's own launcher (trainer=ddp / ddp_cpu, no torchrun or srun)"
                    )
                key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
                folder = OmegaConf.select(cfg, key, throw_on_resolution_failure=False)
                check_writable(key, folder)
                with open_dict(cfg):  # what Hydra's run would set: the folders ${hydra:runtime...} name
                    cfg.paths.root_dir, cfg.paths.output_dir = os.getcwd(), str(folder)
                check_config(cfg)
    finally:
        GlobalHydra.instance().clear()


def _missing_group_message(e, overrides: list[str]) -> str:
    from hydra.core.global_hydra import GlobalHydra

    for o in overrides:
        group, _, value = o.lstrip("+~").partition("=")
        if "." in group or not value:
            continue
        options = GlobalHydra.instance().config_loader().get_group_options(group)
        if options and value not in options:
            return f"{group}={value}: no such {group} config{closest(value, options)}; choices: {', '.join(options)}"
        if not options and f"'{group}" in str(e):
            return f"{group}={value}: there is no config group {group!r}"
    return str(e).strip().splitlines()[0]


def _bad_key_message(e) -> str:
    from omegaconf.errors import ValidationError

    cause = e.__cause__ or e
    key, first = getattr(cause, "full_key", None), str(e).strip().splitlines()[0]
    lines = str(e).strip().splitlines()
    where = re.match(r"In '([\w/]+)'", first)
    full_key = next((ln.split(":", 1)[1].strip() for ln in lines if ln.strip().startswith("full_key:")), None)
    if not key and where and full_key and len(lines) > 1:  # a config file of a group sets a key the data lacks
        hint = " (a model's recipe: it expects the data its model trains on)" if where[1].startswith("recipe/") else ""
        return f"{full_key}: {lines[1].strip()}, set by conf/{where[1]}.yaml{hint}"
    if not key:
        return first
    if isinstance(cause, ValidationError):
        return one_line(cause, "")
    object_type = getattr(cause, "object_type", None)
    if (
        ("not in" in str(cause) or "Could not" in first)
        and object_type is not None
        and dataclasses.is_dataclass(object_type)
    ):
        names = [f.name for f in dataclasses.fields(object_type) if not f.name.startswith("_")]
        return f"{key}: no such key{closest(key.rsplit('.', 1)[-1], names)}"
    if "not in struct" in str(cause) or "Could not" in first:
        return f"{key}: no such key; add it with +{key}=... only if the class takes it"
    return f"{key}: {str(cause).strip().splitlines()[0]}"


def read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


def check_writable(key: str, folder: str | None) -> None:
    """The output folder can be made and written (its nearest existing parent is a writable folder)."""
    if not folder:
        return
    path = Path(folder).absolute()
    parent = path
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{key}={folder}: {parent} is not a folder")
    if read_only_fs(parent) or not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}={folder}: {parent} is not writable")


register()


def check_metric(name: str | None, model, trainer) -> None:
    """optimized_metric names a metric the model (or a callback) logs: found out before a sweep's first trial."""
    if not name:
        return
    declared = model.declared_metrics() | {m for cb in trainer.callbacks for m in getattr(cb, "metrics", ())}
    if name not in declared:
        raise ConfigError(
            f"optimized_metric={name!r}: {type(model).__name__} logs no such metric"
            f"{closest(name, declared)}; it logs {', '.join(sorted(declared))}"
        )


def check_memory(model_cls: type, cfg, dims: dict[str, Any], accelerator: str) -> None:
    """Refuse a model whose weights, gradients and optimizer state (about 4 copies) cannot fit, before allocating:
    the model is built on the meta device first, which allocates nothing."""
    import torch

    try:
        with torch.device("meta"):
            n = sum(p.numel() for p in model_cls(cfg, **dims).parameters())
    except (NotImplementedError, RuntimeError):  # a layer that cannot be built without memory: no estimate
        return
    need = 4 * 4 * n
    if accelerator in ("gpu", "cuda") and torch.cuda.is_available():
        free, where = torch.cuda.mem_get_info()[0], "the GPU"
    else:
        free, where = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "this machine"
    if need > free:
        raise ConfigError(
            f"the model has {n:,} parameters: with gradients and the optimizer's state about "
            f"{need / 2**30:.1f} GiB, more than the {free / 2**30:.1f} GiB free on {where}; "
            "make it smaller (model.n_factors, model.layers, ...)"
        )


def check_compatible(model_cls: type, dm_cls: type, choices: dict[str, str] | None = None) -> None:
    """The model trains on the kind of data the data config gives (named by their config choices)."""
    kinds = getattr(dm_cls, "kinds", ()) or (dm_cls.kind,)
    if model_cls.data_kind not in kinds:
        choices = choices or {}
        model, data = choices.get("model", model_cls.__name__), choices.get("data", dm_cls.__name__)
        raise ConfigError(
            f"model={model} trains on {model_cls.data_kind} data, but data={data} provides "
            f"{' or '.join(kinds)} data; leave data= out to get the model's own, or pick a "
            f"{model_cls.data_kind} data config"
        )


def hydra_choices() -> dict[str, str]:
    from hydra.core.hydra_config import HydraConfig

    return dict(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else {}
