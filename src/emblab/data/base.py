"""What every emblab DataModule shares: data held as tensors, batched by index, sharded for DDP.

The hot path has no per-sample Python: a batch sampler yields one index tensor per batch and the
dataset answers the whole batch at once (`__getitems__`, torch's batched fetch) with `tensor[idx]`
for each of its tensors; the collate step passes it on as it is. A model with steps_per_call = k > 1 gets k such batches per training call (a list),
one optimizer step each: Lightning's per-batch overhead is then paid once per k steps.
"""

from __future__ import annotations

import math
from typing import Any, Iterator, NamedTuple

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from emblab.errors import ConfigError, check_range


class GroupedBatch(NamedTuple):
    """The k batches of one training call (steps_per_call), gathered at once: `tensors` hold them one after
    the other along dim 0, each `size` rows but the last (`last` rows, the end of an epoch). One
    gather, and a batch of a few tensors for Lightning to walk (moving k tuples to the device cost it
    more than the steps' own Python)."""

    tensors: tuple[Tensor, ...]
    k: int
    size: int
    last: int

    def batches(self) -> list[tuple[Tensor, ...]]:
        sizes = [self.size] * (self.k - 1) + [self.last]
        return list(zip(*(torch.split(t, sizes) for t in self.tensors)))

    @classmethod
    def gather(cls, dataset, idx: list[Tensor]) -> "GroupedBatch":
        return cls(tuple(dataset[torch.cat(idx)]), len(idx), len(idx[0]), len(idx[-1]))


class TensorBatchDataset(Dataset):
    """Tensors of equal first dimension; indexing with an index tensor returns a whole batch."""

    def __init__(self, *tensors: Tensor):
        assert tensors and all(len(t) == len(tensors[0]) for t in tensors), "tensors differ in length"
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, idx: Tensor | list[Tensor]) -> tuple[Tensor, ...] | GroupedBatch:
        if isinstance(idx, list):  # k batches for one training call (steps_per_call)
            return GroupedBatch.gather(self, idx)
        return tuple(t[idx] for t in self.tensors)

    __getitems__ = __getitem__  # the DataLoader's batched fetch: one call per batch


def as_is(batch):
    """collate_fn: the dataset answered with the whole batch already."""
    return batch


class IndexBatchSampler(Sampler[Tensor]):
    """Yields one LongTensor of indices per batch.

    Shuffled by a generator seeded with seed + epoch (Lightning calls set_epoch), so a resumed run
    sees the same order. Under DDP each rank takes every world_size-th index of the same permutation,
    padded by wrapping around like torch's DistributedSampler, so no sample is lost and all ranks run
    the same number of steps. `batch_size` here is per rank.
    """

    def __init__(self, n: int, batch_size: int, shuffle: bool, seed: int = 0, drop_last: bool = False,
                 rank: int = 0, world_size: int = 1):
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.drop_last, self.rank, self.world_size = drop_last, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> Tensor:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=g)  # on the CPU; indexing moves it to the data's device
        else:
            order = torch.arange(self.n)
        if self.world_size > 1:
            per_rank = math.ceil(self.n / self.world_size)
            pad = per_rank * self.world_size - self.n
            if pad:
                order = torch.cat([order, order[:pad]])
            order = order[self.rank :: self.world_size]
        return order

    def __iter__(self) -> Iterator[Tensor]:
        order = self._indices()
        stop = len(order) - len(order) % self.batch_size if self.drop_last else len(order)
        for start in range(0, stop, self.batch_size):
            yield order[start : start + self.batch_size]

    def __len__(self) -> int:
        n = math.ceil(self.n / self.world_size)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)


class GroupedBatchSampler(Sampler[list[Tensor]]):
    """Up to k consecutive batches of another batch sampler at a time (steps_per_call)."""

    def __init__(self, batches: IndexBatchSampler, k: int):
        self.batches, self.k = batches, k

    def set_epoch(self, epoch: int) -> None:
        self.batches.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[Tensor]]:
        group = []
        for idx in self.batches:
            group.append(idx)
            if len(group) == self.k:
                yield group
                group = []
        if group:
            yield group

    def __len__(self) -> int:
        return math.ceil(len(self.batches) / self.k)


def _move_tensors(ds, device: torch.device) -> dict:
    """Every tensor attribute of a dataset (and tuples of them) to device, in place; returns the
    attributes as they were."""
    before = {}
    for name, value in vars(ds).items():
        if isinstance(value, torch.Tensor):
            before[name] = value
            setattr(ds, name, value.to(device))
        elif isinstance(value, tuple) and value and all(isinstance(v, torch.Tensor) for v in value):
            before[name] = value
            setattr(ds, name, tuple(v.to(device) for v in value))
    return before


class EmblabDataModule(pl.LightningDataModule):
    """Base for emblab's DataModules.

    Subclasses set `kind` (which model families can use it), fill the tensors in `setup`, and say
    what the model needs to know (`dims`) and what must travel with a checkpoint (`artifacts`).
    `batch_size` is global: under DDP each of N ranks takes batch_size // N per step, so a run on N
    processes takes the same optimizer steps as one process with the same config.
    `on_device`: training on a GPU, the tensors move to it once and batches are gathered there: no
    host-to-device copy per batch (pinned memory would still copy every batch; these data sets, even
    25M ratings at ~0.5 GB, fit beside the model).
    """

    kind: str = "?"

    def __init__(self, batch_size: int = 64, eval_batch_size: int | None = None, seed: int = 42,
                 on_device: bool = True):
        super().__init__()
        check_range("data.batch_size", batch_size, lo=1, integer=True)
        if eval_batch_size is not None:
            check_range("data.eval_batch_size", eval_batch_size, lo=1, integer=True)
        self.batch_size, self.seed, self.on_device = batch_size, seed, on_device
        self.eval_batch_size = eval_batch_size or batch_size * 8
        self.train_ds: TensorBatchDataset | None = None
        self.val_ds: TensorBatchDataset | None = None
        self.test_ds: TensorBatchDataset | None = None
        self.train_steps_per_epoch: int | None = None  # optimizer steps, known once the train loader is built
        self.steps_per_call = 1  # batches per training call: train.py sets the model's (model.steps_per_call)

    def dims(self) -> dict[str, Any]:
        """Sizes the model takes from the data (n_users, vocab_size, ...), passed to its constructor."""
        return {}

    def artifacts(self) -> dict[str, Any]:
        """Plain containers and tensors saved in checkpoints (id maps, vocab, ...): weights_only-safe."""
        return {}

    def unseen_counts(self) -> dict[str, dict[str, int]]:
        """{split: {column: rows whose id or category training never saw}}; logged in setup, written by eval."""
        return {}

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def to_device(self, ds):
        """The split's tensors on the training device (see on_device); unchanged on a CPU. teardown()
        brings them back, so what runs after fit (plots, interpretation) finds them on the CPU."""
        device = getattr(getattr(self.trainer, "strategy", None), "root_device", None)
        if not self.on_device or device is None or device.type == "cpu":
            return ds
        if all(ds is not moved for moved, _ in getattr(self, "_on_cpu", [])):
            self._on_cpu = getattr(self, "_on_cpu", []) + [(ds, _move_tensors(ds, device))]
        return ds

    def teardown(self, stage: str | None = None) -> None:
        for ds, attrs in getattr(self, "_on_cpu", []):  # the CPU originals back: no copy from the device
            vars(ds).update(attrs)
        self._on_cpu = []

    def _loader(self, ds: TensorBatchDataset | None, train: bool) -> DataLoader:
        if ds is None or len(ds) == 0:
            split = "training" if train else "validation (or test)"
            raise ConfigError(f"the {split} split is empty: the data.split settings leave it no rows"
                              + ("" if train else "; to train without validation set trainer.limit_val_batches=0"))
        ds = self.to_device(ds)
        rank, world = self._rank_world()
        size = self.batch_size if train else self.eval_batch_size
        if size < world:
            raise ConfigError(f"data.{'batch_size' if train else 'eval_batch_size'}={size} is smaller than the "
                              f"{world} processes it is split across")
        per_rank = size // world
        overfitting = self.trainer is not None and self.trainer.overfit_batches > 0
        if train and not overfitting:
            sampler = IndexBatchSampler(len(ds), per_rank, shuffle=True, seed=self.seed, rank=rank, world_size=world)
        else:
            sampler = IndexBatchSampler(len(ds), per_rank, shuffle=False, rank=rank, world_size=world)
        if train:
            self.train_steps_per_epoch = len(sampler)
            k = self.steps_per_call
            if k > 1 and not overfitting:  # overfit_batches counts batches: the same few, one step each
                sampler = GroupedBatchSampler(sampler, k)
        # as a batch_sampler, so the DataLoader's own sampler is the plain SequentialSampler it makes:
        # Lightning leaves it alone (overfit_batches included) and our order is the one used
        return DataLoader(ds, batch_sampler=sampler, collate_fn=as_is)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_ds, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_ds, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_ds, train=False)
