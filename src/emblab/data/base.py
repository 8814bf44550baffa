"""What every emblab DataModule shares: data held as tensors, batched by index, sharded for DDP.

The hot path has no per-sample Python: a batch sampler yields one index tensor per batch and the dataset
answers the whole batch at once (`__getitems__`, torch's batched fetch) with `tensor[idx]` for each of its
tensors; the collate step passes it on as it is.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from emblab.core.errors import ConfigError
from emblab.core.settings import checked, setting


@dataclass
class DataConfig:
    """What every data config has. batch_size is global: under DDP each of N ranks takes batch_size / N per
    step, so N processes take the same optimizer steps as one. on_device: training on a GPU, the tensors move
    there once and batches are gathered there (no host-to-device copy per batch)."""

    batch_size: int = setting(64, ge=1)
    eval_batch_size: int | None = setting(None, ge=1)  # null: 8 x batch_size
    seed: int = setting(42, ge=0)  # shuffling (seed + epoch)
    on_device: bool = True


class TensorBatchDataset(Dataset):
    """Tensors of equal first dimension; indexing with an index tensor returns a whole batch."""

    def __init__(self, *tensors: Tensor):
        assert tensors and all(len(t) == len(tensors[0]) for t in tensors), "tensors differ in length"
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, idx: Tensor) -> tuple[Tensor, ...]:
        return tuple(t[idx] for t in self.tensors)

    __getitems__ = __getitem__  # the DataLoader's batched fetch: one call per batch


def split_digest(*parts) -> str:
    """A short fingerprint of how rows were split (boolean masks, index arrays, cut points): stored in
    checkpoints, so evaluating or resuming on another split is caught instead of scoring training rows."""
    h = hashlib.md5()
    for part in parts:
        h.update(np.ascontiguousarray(np.asarray(part)).tobytes() + b"|")
    return h.hexdigest()[:16]


def as_is(batch):
    """collate_fn: the dataset answered with the whole batch already."""
    return batch


class IndexBatchSampler(Sampler[Tensor]):
    """Yields one LongTensor of indices per batch.

    Shuffled by a generator seeded with seed + epoch (Lightning calls set_epoch), so a resumed run sees the
    same order. Under DDP each rank takes every world_size-th index of the same permutation, padded by
    wrapping around like torch's DistributedSampler, so no sample is lost and all ranks run the same number
    of steps. `batch_size` here is per rank. members=k > 1: k orders of their own, one per member of an ensemble
    in one net, each batch a (B, k) index tensor whose column j is member j's rows (TabM's batches not shared)."""

    def __init__(
        self,
        n: int,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        resume: tuple[int, int] | None = None,
        pad: bool = True,
        members: int = 1,
    ):
        self.members = members
        self.n, self.batch_size, self.shuffle, self.seed, self.pad = n, batch_size, shuffle, seed, pad
        self.rank, self.world_size, self.epoch = rank, world_size, 0
        self.resume = resume  # (epoch, batches already trained in it): a run resumed mid-epoch starts after them

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def sampler(self) -> IndexBatchSampler:
        """Lightning calls set_epoch on a batch sampler's `sampler` (as torch's BatchSampler has one), not on the
        batch sampler: without it every epoch would see the first epoch's order."""
        return self

    def _indices(self) -> Tensor:
        """(n,) indices, or (n, k) with k members (one column per member's order)."""
        if self.shuffle:  # on the CPU; indexing moves it to the data's device
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.stack([torch.randperm(self.n, generator=g) for _ in range(self.members)], 1)  # (n, k)
        else:
            order = torch.arange(self.n)[:, None].expand(-1, self.members)
        if self.world_size > 1:  # evaluation (pad=False): no row twice, ranks may take one batch more or less
            pad = math.ceil(self.n / self.world_size) * self.world_size - self.n if self.pad else 0
            order = torch.cat([order, order[:pad]])[self.rank :: self.world_size]
        return order if self.members > 1 else order[:, 0]

    def __iter__(self) -> Iterator[Tensor]:
        order, skip = self._indices(), 0
        if self.resume is not None:
            skip = self.resume[1] if self.resume[0] == self.epoch else 0
            self.resume = None
        for start in range(skip * self.batch_size, len(order), self.batch_size):
            yield order[start : start + self.batch_size]

    def __len__(self) -> int:
        n = math.ceil(self.n / self.world_size) if self.pad else len(range(self.rank, self.n, self.world_size))
        return math.ceil(n / self.batch_size)


def _move_tensors(ds, device: torch.device) -> dict:
    """Every tensor attribute of a dataset (in tuples too) to device, in place; returns them as they were."""

    def moved(value):
        if isinstance(value, torch.Tensor):
            return value.to(device)
        return tuple(moved(v) for v in value) if isinstance(value, tuple) else value

    before = {name: value for name, value in vars(ds).items() if isinstance(value, (torch.Tensor, tuple))}
    for name, value in before.items():
        setattr(ds, name, moved(value))
    return before


class EmblabDataModule(pl.LightningDataModule):
    """Base for emblab's DataModules: `Config` (the settings dataclass) and `kind` (which model families can
    use it). Subclasses fill the tensors in `setup` and say what the model needs to know (`dims`) and what
    must travel with a checkpoint (`artifacts`)."""

    Config: type = DataConfig
    kind: str = "?"
    kinds: tuple[str, ...] = ()  # the kinds it can give (default: its kind)

    def __init__(self, cfg, kind: str | None = None):
        super().__init__()
        if kind is not None and kind not in (self.kinds or (self.kind,)):
            raise ConfigError(f"{type(self).__name__} gives {', '.join(self.kinds or (self.kind,))} data, not {kind}")
        self.cfg, self.kind = cfg, kind or self.kind
        self.batch_size, self.seed, self.on_device = cfg.batch_size, cfg.seed, cfg.on_device
        self.eval_batch_size = cfg.eval_batch_size or cfg.batch_size * 8
        self.train_ds: Dataset | None = None
        self.val_ds: Dataset | None = None
        self.test_ds: Dataset | None = None  # None: this data has no test split
        self._on_cpu: list = []
        self.trained = {"epoch": 0, "rows": 0}  # rows of this epoch trained on (state_dict: a mid-epoch resume)
        self.resume: dict | None = None

    @classmethod
    def of(cls, kind: str | None = None, **settings):
        """The DataModule from keyword settings, checked (fastai's `from_df` spirit: name what differs)."""
        return cls(checked(cls.Config, settings, "data"), kind)

    def dims(self) -> dict[str, Any]:
        """Sizes the model takes from the data (n_users, vocab_size, ...), passed to its constructor."""
        return {}

    def artifacts(self) -> dict[str, Any]:
        """Plain containers and tensors saved in checkpoints (id maps, vocab, ...): weights_only-safe."""
        return {}

    def unseen_counts(self) -> dict[str, dict[str, int]]:
        """{split: {column: rows whose id or category training never saw}}; logged in setup, written by eval."""
        return {}

    # A run stopped mid-epoch (a signal, every_n_train_steps) resumes after the rows it trained on: Lightning
    # hands each batch to the DataModule before training on it, and keeps the DataModule's state in checkpoints.
    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        trainer = self.trainer
        if trainer is not None and trainer.training:
            if trainer.current_epoch != self.trained["epoch"]:
                self.trained = {"epoch": trainer.current_epoch, "rows": 0}
            self.trained["rows"] += len(batch[0])
        return batch

    def state_dict(self) -> dict[str, Any]:
        return dict(self.trained)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.trained, self.resume = dict(state_dict), dict(state_dict)

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def to_device(self, ds):
        """The split's tensors on the training device (see on_device); unchanged on a CPU. teardown() brings
        them back, so what runs after fit (plots, interpretation) finds them on the CPU."""
        device = getattr(getattr(self.trainer, "strategy", None), "root_device", None)
        if not self.on_device or device is None or device.type == "cpu":
            return ds
        if all(ds is not moved for moved, _ in self._on_cpu):
            self._on_cpu.append((ds, _move_tensors(ds, device)))
        return ds

    def teardown(self, stage: str | None = None) -> None:
        for ds, attrs in self._on_cpu:  # the CPU originals back: no copy from the device
            vars(ds).update(attrs)
        self._on_cpu = []

    def _loader(self, ds, train: bool, members: int = 1) -> DataLoader:
        if ds is None or len(ds) == 0:
            split = "training" if train else "validation (or test)"
            raise ConfigError(
                f"the {split} split is empty: the data.split settings leave it no rows"
                + ("" if train else "; to train without validation set trainer.limit_val_batches=0")
            )
        ds = self.to_device(ds)
        rank, world = self._rank_world()
        size = self.batch_size if train else self.eval_batch_size
        overfitting = self.trainer is not None and self.trainer.overfit_batches > 0
        shuffle = train and not overfitting  # overfit_batches: the same first batches every epoch
        per_rank = max(1, size // world)
        resume = (self.resume["epoch"], self.resume["rows"] // per_rank) if train and self.resume else None
        k = members if shuffle else 1  # evaluation: every member sees the same rows
        sampler = IndexBatchSampler(len(ds), per_rank, shuffle, self.seed, rank, world, resume, pad=train, members=k)
        # as a batch_sampler, so the DataLoader's own sampler is the plain SequentialSampler it makes:
        # Lightning leaves it alone (overfit_batches included) and our order is the one used
        return DataLoader(ds, batch_sampler=sampler, collate_fn=as_is)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_ds, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_ds, train=False)

    def test_dataloader(self) -> DataLoader:
        if self.test_ds is None:
            raise ConfigError("this data has no test split (set its test fraction or test file to make one)")
        return self._loader(self.test_ds, train=False)
