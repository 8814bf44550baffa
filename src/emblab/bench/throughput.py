"""Throughput of emblab's Lightning path against a minimal hand-written PyTorch loop, per model family.

    python -m emblab.bench [quick=true] [out=DIR] [families=EmbeddingDotBias,char_rnn] [reps=7] [threads=1]
                           [min_ratio=0.95] [update_md=BENCHMARKS.md]

For each family both paths take the same optimizer steps on the same model config, data tensors and
batch size (the family's default): (a) `train.py`'s Trainer with the default callbacks and the CSV
logger, timed from the first training batch to the end of the last (validation off: both paths only
train); (b) a loop that indexes the same tensors and steps the same optimizer and schedule. In this
one process each rep runs Lightning, loop, loop, Lightning (so drift of the machine's speed hits both
alike); the ratio is the median over reps of Lightning's mean samples/s over the loop's. A sample is one predicted
target: a rating, a table row, a character. Writes throughput.json and throughput.md into `out`; exits 1 when a
ratio is below min_ratio (the regression guard).
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor

from emblab import cli
from emblab.bench import choose, compose, markdown_table, new_result, prepare, write_result
from emblab.errors import ConfigError
from emblab.models.base import make_optimizer
from emblab.models.char_rnn import detach_hidden, nll_loss_seq

# -- one training step of each family, written out as a user would without a framework
def collab_loss(model, batch, state):
    return model.train_loss(batch)  # MSE plus the per-rating penalty (the family's own loss, no framework in it)


def tabular_loss(model, batch, state):
    cats, conts, y = batch  # (B, n_cat), (B, n_cont), (B,)
    return F.mse_loss(model.net(cats, conts).squeeze(1), y)


def char_last_loss(model, batch, state):
    x, y = batch  # (B, cs), (B,)
    return F.nll_loss(model.train_net(x), y)


def char_seq_loss(model, batch, state):
    x, y = batch  # (B, T), (B, T)
    return nll_loss_seq(model.train_net(x), y)


def char_stateful_loss(model, batch, state):
    x, y = batch  # (B, T), (B, T)
    h = state.get("h")
    if h is None:
        h = model.net.init_hidden(x.shape[0], x.device)
    out, h = model.train_net(x, h)
    state["h"] = detach_hidden(h)
    return nll_loss_seq(out, y)


@dataclass(frozen=True)
class Family:
    overrides: tuple[str, ...]
    loss: Callable
    steps: int  # optimizer steps per measurement
    quick_steps: int


FAMILIES = {
    "EmbeddingDotBias": Family(("model=collab",), collab_loss, 1280, 384),
    "EmbeddingNN": Family(("model=collab_nn",), collab_loss, 1280, 384),
    "MixedInputModel": Family(("model=mixed_input",), tabular_loss, 100, 30),
    "char_rnn": Family(("model=char_rnn",), char_last_loss, 100, 30),
    "char_seq_rnn": Family(("model=char_seq_rnn",), char_seq_loss, 150, 40),
    "stateful_lstm": Family(("model=char_lstm",), char_stateful_loss, 16, 6),
}


@dataclass
class Args:
    out: str = "logs/bench/throughput"
    quick: bool = False
    families: str = ",".join(FAMILIES)
    reps: int | None = None  # default 7 (quick: 3); a rep runs Lightning, loop, loop, Lightning
    threads: int = 1
    overrides: list[str] = field(default_factory=list)  # for both paths, e.g. [model.compile=true]
    min_ratio: float = 0.0  # exit 1 when a family's ratio is below it (0: report only)
    update_md: str | None = None  # a Markdown file whose bench section is replaced by the new table


def n_targets(batch) -> int:
    """Predicted targets in a batch, or in the k batches of one call (steps_per_call)."""
    return batch[-1].numel() if isinstance(batch[0], Tensor) else sum(b[-1].numel() for b in batch)


class TrainTimer(pl.Callback):
    """Seconds and samples (predicted targets) from the start of the first training batch to the end
    of the last: the training loop itself, not fit's setup and teardown (the loop has neither)."""

    def __init__(self):
        self.samples, self.start, self.seconds = 0, None, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.start is None:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.samples += n_targets(batch)
        self.seconds = time.perf_counter() - self.start


def fresh_model(cfg, dm):
    import hydra

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    return hydra.utils.instantiate(cfg.model, **dm.dims(), _convert_="all")


def lightning_run(cfg, dm) -> tuple[float, int]:
    from emblab.train import build_trainer

    model, timer = fresh_model(cfg, dm), TrainTimer()
    trainer, _ = build_trainer(cfg, extra_callbacks=(timer,), model=model)
    trainer.fit(model, datamodule=dm)
    return timer.seconds, timer.samples


def loop_batches(dm):
    """The training batches, endlessly, as the DataModule would give them: shuffled index batches, or
    the stateful stream in order."""
    ds, epoch = dm.train_ds, 0
    while True:
        if hasattr(ds, "tracks"):  # stateful stream: chunk i of every track
            yield from (ds[i] for i in range(len(ds)))
        else:
            order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(dm.seed + epoch))
            yield from (ds[order[i : i + dm.batch_size]] for i in range(0, len(ds), dm.batch_size))
        epoch += 1


def loop_run(cfg, dm, family: Family, steps: int) -> tuple[float, int]:
    model = fresh_model(cfg, dm)
    model.train()
    o = model.optim_config()
    if o["schedule"] != "onecycle":
        raise ConfigError(f"bench's loop knows the onecycle schedule; {cfg.model._target_} uses {o['schedule']}")
    opt = make_optimizer(model.parameters(), o)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=o["lr"], total_steps=steps, pct_start=o["pct_start"])
    state, samples, batches = {}, 0, loop_batches(dm)
    start = time.perf_counter()
    for _ in range(steps):
        batch = next(batches)
        loss = family.loss(model, batch, state)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        samples += batch[-1].numel()
    return time.perf_counter() - start, samples


def bench_family(name: str, family: Family, args: Args, out: Path) -> dict:
    from emblab.train import build_data_and_model

    steps = family.quick_steps if args.quick else family.steps
    run_dir = out / "runs" / name
    cfg = compose([*family.overrides, *args.overrides, "logger=csv", f"trainer.max_steps={steps}", "trainer.max_epochs=-1",
                   "trainer.limit_val_batches=0", "trainer.num_sanity_val_steps=0"], run_dir)
    dm, _ = build_data_and_model(cfg)
    rates, paired = {"lightning": [], "loop": []}, []
    reps = args.reps or (3 if args.quick else 7)
    for _ in range(reps):
        # A B B A: a machine that speeds up or slows down during a rep hits both paths alike
        rep = {"lightning": [], "loop": []}
        for path in ("lightning", "loop", "loop", "lightning"):
            seconds, samples = lightning_run(cfg, dm) if path == "lightning" else loop_run(cfg, dm, family, steps)
            rep[path].append(samples / seconds)
            rates[path].append(samples / seconds)
        paired.append(statistics.mean(rep["lightning"]) / statistics.mean(rep["loop"]))
    return {"lightning_samples_per_s": round(statistics.median(rates["lightning"]), 1),
            "loop_samples_per_s": round(statistics.median(rates["loop"]), 1),
            "ratio": round(statistics.median(paired), 3), "ratio_range": [round(min(paired), 3), round(max(paired), 3)],
            "batch_size": dm.batch_size, "steps": steps, "reps": reps,
            "runs": {k: [round(v, 1) for v in vs] for k, vs in rates.items()}}


def markdown(result: dict) -> str:
    m, rows = result["machine"], []
    for name, r in result["families"].items():
        lo, hi = r["ratio_range"]
        rows.append([name, str(r["batch_size"]), f"{r['steps']} x {2 * r['reps']}", f"{r['lightning_samples_per_s']:,.0f}",
                     f"{r['loop_samples_per_s']:,.0f}", f"**{r['ratio']:.3f}**", f"{lo:.2f}-{hi:.2f}"])
    return markdown_table(result, f"Lightning {m['pytorch_lightning']}, Python {m['python']}",
                          ["family", "batch", "steps x runs", "Lightning samples/s", "loop samples/s", "ratio (median)",
                           "ratio range"], rows)


def main(args: Args) -> dict:
    names = choose(args.families, FAMILIES, "families")
    out = prepare(args.out, args.threads)
    start = time.perf_counter()
    result = new_result("emblab.bench", args.threads, families={})
    for name in names:
        result["families"][name] = r = bench_family(name, FAMILIES[name], args, out)
        print(f"{name}: Lightning {r['lightning_samples_per_s']:,.0f}/s, loop {r['loop_samples_per_s']:,.0f}/s, "
              f"ratio {r['ratio']:.3f}", flush=True)
    result["wall_seconds"] = round(time.perf_counter() - start, 1)
    write_result(out, "throughput", result, markdown(result), args.update_md)
    slow = {n: r["ratio"] for n, r in result["families"].items() if r["ratio"] < args.min_ratio}
    if slow:
        print(f"below min_ratio={args.min_ratio}: {slow}", file=sys.stderr)
        raise SystemExit(1)
    return result
