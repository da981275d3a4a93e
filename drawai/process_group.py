"""The process group that `classifier.train` runs in: under torchrun each process trains on its own shard of every
epoch (`ShardedSampler`), DDP averages the gradients, rank 0 alone writes the checkpoint, and nothing in the
checkpoint depends on the number of processes, so any number can resume it. Outside torchrun every helper here is
the single-process case: rank 0 of 1, no communication.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, TensorDataset

from drawai import seeds
from drawai.data import Drawings

# --- sharding every epoch across processes -------------------------------------------------------------------

class ShardedSampler(DistributedSampler):
    """torch's DistributedSampler (same shards, padding and `set_epoch`), with its indices in a numpy array.

    DistributedSampler builds a Python list of every index each epoch, which costs memory and seconds on the
    full dataset. This keeps an int64 array of the process's own shard, 8 bytes a drawing / N processes, after
    the permutation it is cut from (8 bytes a drawing) is gone (docs/scaling.md, "What the training reads").
    """

    def __iter__(self):
        n = len(self.dataset)
        shuffled = torch.Generator().manual_seed(self.seed + self.epoch)  # torch's own, so the shards are torch's
        order = torch.randperm(n, generator=shuffled).numpy() if self.shuffle else np.arange(n)
        if self.drop_last:
            order = order[:self.total_size]
        elif self.total_size > n:  # pad by wrapping around, so every process gets the same number of batches
            order = np.resize(order, self.total_size)
        shard = order[self.rank:self.total_size:self.num_replicas].copy()  # lets the whole permutation go
        return map(int, shard)  # one int at a time, not a list


# --- the process group -----------------------------------------------------------------------------------------

def setup() -> tuple[int, int]:
    """Join the process group torchrun describes (env RANK, WORLD_SIZE, MASTER_ADDR...); returns (rank, world).

    nccl between GPUs, gloo on CPUs. A plain `python` run (no WORLD_SIZE, or 1) stays a single process.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return rank_and_world()


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes: (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def default_device() -> torch.device:
    """This process's GPU (LOCAL_RANK picks one of the machine's) when there is one, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """`model` in DistributedDataParallel when there are several processes (it averages the gradients)."""
    if rank_and_world()[1] == 1:
        return model
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def train_loader(dataset: Dataset, batch_size: int, seed: int, num_workers: int = 0) -> DataLoader:
    """This process's batches of every epoch: `batch_size` is the global batch, split evenly across processes.

    So the number of steps an epoch takes, and with it the learning-rate schedule, is ceil(N / batch_size)
    whatever the number of processes, which is what lets a checkpoint resume on another number.
    """
    rank, world = rank_and_world()
    if batch_size % world:
        raise ValueError(f"batch_size {batch_size} must be divisible by the number of processes ({world})")
    sampler = ShardedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed)
    return DataLoader(dataset, batch_size=batch_size // world, sampler=sampler, num_workers=num_workers,
                      pin_memory=torch.cuda.is_available(), persistent_workers=num_workers > 0)


def epoch_generator(seed: int, epoch: int, rank: int) -> torch.Generator:
    """Seed this process's randomness for an epoch from (seed, epoch, rank); returns the augmentation generator.

    Dropout draws from torch's global generator, which is seeded here too. Different per rank, and a
    function of the epoch alone: a resumed run draws what an uninterrupted one would, with nothing in
    the checkpoint.
    """
    for_dropout, for_augment = seeds.integers(seed, seeds.CLASSIFIER_EPOCH, epoch, rank, n=2)
    torch.manual_seed(int(for_dropout))
    return torch.Generator().manual_seed(int(for_augment))


def sum_over_ranks(*numbers: float) -> list[float]:
    if rank_and_world()[1] == 1:
        return list(numbers)
    t = torch.tensor(numbers, dtype=torch.float64, device=default_device())
    dist.all_reduce(t)
    return t.tolist()


def check_same(value: int, what: str) -> None:
    """Fail on every process, rather than hang later, when the processes disagree about `value`."""
    if rank_and_world()[1] > 1:
        t = torch.tensor([value, -value], dtype=torch.int64, device=default_device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        if t[0] != -t[1]:
            raise ValueError(f"the processes disagree about {what}: from {-t[1].item()} to {t[0].item()}")


def sync_buffers(model: torch.nn.Module) -> None:
    """Give every process rank 0's BatchNorm running statistics (DDP syncs gradients, not these)."""
    if rank_and_world()[1] > 1:
        for buffer in model.buffers():
            dist.broadcast(buffer, 0)


def barrier() -> None:
    if rank_and_world()[1] > 1:
        dist.barrier()


def tensor_dataset(drawings: Drawings, images: np.ndarray) -> TensorDataset:
    """In-memory canonical images and labels as a Dataset, the form `train_loader` reads."""
    return TensorDataset(torch.from_numpy(images)[:, None], torch.from_numpy(drawings.labels))
