"""Throughput of emblab's Lightning path against a minimal hand-written PyTorch loop, per model family.

    python -m emblab.bench [quick=true] [out=DIR] [families=EmbeddingDotBias,char_rnn] [reps=7] [threads=1]
                           [device=cpu|cuda] [large=true] [min_ratio=0.95] [update_md=BENCHMARKS.md]

For each family both paths take the same optimizer steps on the same model config, data tensors and
batch size (the family's default, or with large=true a large one: LARGE_BATCH): (a) `train.py`'s
Trainer with the default callbacks and the CSV logger; (b) the loop a careful engineer writes: the same
fused optimizer and schedule, zero_grad(set_to_none=True), no host sync per step, the data already on
the device, the same threads and the same model code path (compiled or not). Both are timed over the
same steps: after a warm-up of one Lightning call (steps_per_call steps; the first steps allocate the
optimizer's state), to the end of the last step, which a step count rounded up to a whole number of
calls makes the same step on both sides (on a GPU both ends wait for the device). In this
one process each rep runs Lightning, loop, loop, Lightning (so drift of the machine's speed hits both
alike); the ratio is the median over reps of Lightning's mean samples/s over the loop's. A sample is one predicted
target: a rating, a table row, a character. Writes throughput.json and throughput.md into `out`; exits 1 when a
ratio is below min_ratio (the regression guard).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from emblab.bench import choose, compose, markdown_table, new_result, prepare, write_result
from emblab.core.errors import ConfigError
from emblab.models.optim import make_optimizer
from emblab.nets.char import detach_hidden, nll_loss_seq


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


# large=true: batches a GPU wants (ratings, table rows, sequences or stream tracks)
LARGE_BATCH = {
    "EmbeddingDotBias": 8192,
    "EmbeddingNN": 8192,
    "MixedInputModel": 4096,
    "char_rnn": 1024,
    "char_seq_rnn": 1024,
    "stateful_lstm": 1024,
}


@dataclass
class Args:
    out: str = "logs/bench/throughput"
    quick: bool = False
    device: str = "cpu"  # cpu | cuda: both paths on that device
    large: bool = False  # LARGE_BATCH instead of each family's default batch
    clock: str = "wall"  # wall | cpu: this process's CPU time (a shared machine; threads=1)
    families: str = ",".join(FAMILIES)
    reps: int | None = None  # default 7 (quick: 3); a rep runs Lightning, loop, loop, Lightning
    threads: int = 1
    overrides: list[str] = field(default_factory=list)  # for both paths, e.g. [model.compile=true]
    min_ratio: float = 0.0  # exit 1 when a family's ratio is below it (0: report only)
    update_md: str | None = None  # a Markdown file whose bench section is replaced by the new table


def n_targets(batch) -> int:
    """Predicted targets in a batch, or in the k batches of one call (steps_per_call)."""
    return batch[-1].numel()


class Clock:
    """Time between start() and the last stop(). On a GPU, CUDA events on the stream: no host sync
    inside the timed steps (a sync per step would itself cost what is being measured), and the span
    still counts the device idling while the host launches work. On a CPU, wall time, or with
    kind="cpu" this process's CPU time: on a machine that other work shares, its load then does not
    count against either side (meaningful with threads=1)."""

    def __init__(self, device: str = "cpu", kind: str = "wall"):
        self.cuda, self.kind = device == "cuda", kind
        self.t0 = self.t1 = None

    def _now(self):
        if not self.cuda:
            return time.process_time() if self.kind == "cpu" else time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def start(self) -> None:
        self.t0 = self._now()

    def stop(self) -> None:
        self.t1 = self._now()

    @property
    def started(self) -> bool:
        return self.t0 is not None

    def seconds(self) -> float:
        if self.t1 is None:
            return 0.0
        if not self.cuda:
            return self.t1 - self.t0
        self.t1.synchronize()
        return self.t0.elapsed_time(self.t1) / 1e3


class TrainTimer(pl.Callback):
    """Seconds and samples (predicted targets) from the end of the first training call (the warm-up)
    to the end of the last: the training loop itself, not fit's setup and teardown."""

    def __init__(self, device: str = "cpu", clock: str = "wall"):
        self.clock, self.samples = Clock(device, clock), 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if not self.clock.started:  # the warm-up call is done
            self.clock.start()
            return
        self.samples += n_targets(batch)
        self.clock.stop()

    @property
    def seconds(self) -> float:
        return self.clock.seconds()


def fresh_model(model_cls: type, s: dict, dm):
    pl.seed_everything(s["run"].seed, workers=True, verbose=False)
    return model_cls(s["model"], **dm.dims())


def lightning_run(model_cls: type, s: dict, dm, device: str = "cpu", clock: str = "wall") -> tuple[float, int]:
    from emblab.training.build import build_trainer

    model, timer = fresh_model(model_cls, s, dm), TrainTimer(device, clock)
    trainer, _ = build_trainer(s, extra_callbacks=(timer,))
    trainer.fit(model, datamodule=dm)
    return timer.seconds, timer.samples


def loop_batches(dm, device: str = "cpu"):
    """The training batches, endlessly, as the DataModule would give them: shuffled index batches, or
    the stateful stream in order; gathered from tensors already on the device."""
    import copy

    from emblab.data.base import _move_tensors

    ds, epoch = copy.copy(dm.train_ds), 0
    _move_tensors(ds, torch.device(device))  # on the copy: the DataModule's own stay where they are
    while True:
        if hasattr(ds, "tracks"):  # stateful stream: chunk i of every track
            yield from (ds[i] for i in range(len(ds)))
        else:
            order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(dm.seed + epoch))
            yield from (ds[order[i : i + dm.batch_size]] for i in range(0, len(ds), dm.batch_size))
        epoch += 1


def loop_run(
    s: dict, dm, family: Family, steps: int, device: str = "cpu", warm: int = 0, clock: str = "wall"
) -> tuple[float, int]:
    """Seconds and samples of steps - warm optimizer steps, after warm untimed ones."""
    model = fresh_model(s["model_cls"], s, dm).to(device)  # the family's own class, no steps_per_call mixin
    model.train()
    o = s["model"].optim
    if o.schedule != "onecycle":
        raise ConfigError(f"bench's loop knows the onecycle schedule; {s['model_cls'].__name__} uses {o.schedule}")
    opt = make_optimizer(model.parameters(), o)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=o.lr, total_steps=steps, pct_start=o.pct_start)
    state, samples, batches, clock = {}, 0, loop_batches(dm, device), Clock(device, clock)
    for step in range(steps):
        if step == warm:
            clock.start()
            samples = 0
        batch = next(batches)
        loss = family.loss(model, batch, state)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        samples += batch[-1].numel()
    clock.stop()
    return clock.seconds(), samples


def bench_family(name: str, family: Family, args: Args, out: Path) -> dict:
    from emblab.training.build import build

    run_dir = out / "runs" / name
    device = ["trainer.accelerator=gpu", "trainer.devices=1"] if args.device == "cuda" else ["trainer.accelerator=cpu"]
    batch = [f"data.batch_size={LARGE_BATCH[name]}"] if args.large else []
    base = [
        *family.overrides,
        *batch,
        *args.overrides,
        *device,
        "logger=csv",
        "trainer.max_epochs=-1",
        "trainer.limit_val_batches=0",
        "trainer.num_sanity_val_steps=0",
    ]
    k = int(compose(base, run_dir).model.get("steps_per_call", 1))
    # a whole number of calls, plus the warm-up call: both paths then time the very same steps
    steps = k * (1 + -(-(family.quick_steps if args.quick else family.steps) // k))
    cfg = compose([*base, f"trainer.max_steps={steps}"], run_dir)
    _, dm, built, s = build(cfg)
    rates, paired, secs = {"lightning": [], "loop": []}, [], {"lightning": [], "loop": []}
    reps = args.reps or (3 if args.quick else 7)
    for _ in range(reps):
        # A B B A: a machine that speeds up or slows down during a rep hits both paths alike
        rep = {"lightning": [], "loop": []}
        for path in ("lightning", "loop", "loop", "lightning"):
            if path == "lightning":
                seconds, samples = lightning_run(type(built), s, dm, args.device, args.clock)
            else:
                seconds, samples = loop_run(s, dm, family, steps, args.device, warm=k, clock=args.clock)
            rep[path].append(samples / seconds)
            secs[path].append(seconds)
            rates[path].append(samples / seconds)
        paired.append(statistics.mean(rep["lightning"]) / statistics.mean(rep["loop"]))
    return {
        "lightning_samples_per_s": round(statistics.median(rates["lightning"]), 1),
        "loop_samples_per_s": round(statistics.median(rates["loop"]), 1),
        "ratio": round(statistics.median(paired), 3),
        "ratio_range": [round(min(paired), 3), round(max(paired), 3)],
        "batch_size": dm.batch_size,
        "steps": steps - k,
        "warm_steps": k,
        "steps_per_call": k,
        "reps": reps,
        "device": args.device,
        # per optimizer step, from the median rates: what each side costs a step
        "lightning_ms_per_step": round(1e3 * statistics.median(secs["lightning"]) / (steps - k), 4),
        "loop_ms_per_step": round(1e3 * statistics.median(secs["loop"]) / (steps - k), 4),
        "runs": {k: [round(v, 1) for v in vs] for k, vs in rates.items()},
    }


def markdown(result: dict) -> str:
    m, rows = result["machine"], []
    for name, r in result["families"].items():
        lo, hi = r["ratio_range"]
        rows.append(
            [
                name,
                str(r["batch_size"]),
                str(r["steps_per_call"]),
                f"{r['steps']} x {2 * r['reps']}",
                f"{r['lightning_samples_per_s']:,.0f}",
                f"{r['loop_samples_per_s']:,.0f}",
                f"{r['lightning_ms_per_step']:.3f}",
                f"{r['loop_ms_per_step']:.3f}",
                f"**{r['ratio']:.3f}**",
                f"{lo:.2f}-{hi:.2f}",
            ]
        )
    return markdown_table(
        result,
        f"device {result.get('device', 'cpu')}, {result.get('clock', 'wall')} clock, "
        f"Lightning {m['pytorch_lightning']}, "
        f"Python {m['python']}",
        [
            "family",
            "batch",
            "steps/call",
            "timed steps x runs",
            "Lightning samples/s",
            "loop samples/s",
            "Lightning ms/step",
            "loop ms/step",
            "ratio (median)",
            "ratio range",
        ],
        rows,
    )


def main(args: Args) -> dict:
    names = choose(args.families, FAMILIES, "families")
    out = prepare(args.out, args.threads)
    start = time.perf_counter()
    if args.device not in ("cpu", "cuda"):
        raise ConfigError(f"device={args.device!r}: expected cpu or cuda")
    if args.clock not in ("wall", "cpu"):
        raise ConfigError(f"clock={args.clock!r}: expected wall or cpu")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda: torch sees no GPU")
    result = new_result("emblab.bench", args.threads, families={}, device=args.device, clock=args.clock)
    if args.device == "cuda":
        result["machine"]["gpu"] = torch.cuda.get_device_name(0)
    for name in names:
        result["families"][name] = r = bench_family(name, FAMILIES[name], args, out)
        print(
            f"{name}: Lightning {r['lightning_samples_per_s']:,.0f}/s, loop {r['loop_samples_per_s']:,.0f}/s, "
            f"ratio {r['ratio']:.3f}",
            flush=True,
        )
    result["wall_seconds"] = round(time.perf_counter() - start, 1)
    write_result(out, "throughput", result, markdown(result), args.update_md)
    slow = {n: r["ratio"] for n, r in result["families"].items() if r["ratio"] < args.min_ratio}
    if slow:
        print(f"below min_ratio={args.min_ratio}: {slow}", file=sys.stderr)
        raise SystemExit(1)
    return result
