"""Multi-process training (DDP) under torchrun: set-up, and the few collectives the loop needs.

One process per device. `torchrun` sets RANK, LOCAL_RANK and WORLD_SIZE; without them (a plain
`asr train`) everything here is a no-op for a world of one. NCCL on CUDA, gloo on CPU.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints, logs, metrics and plots."""
        return self.rank == 0


def _world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def under_torchrun() -> bool:
    """Whether this process is one of several that torchrun started."""
    return _world_size() > 1


def setup(device: str = "auto") -> World:
    """Join the process group when started by torchrun; pick this process's device."""
    size = _world_size()
    use_cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    if size == 1:
        return World(0, 1, torch.device("cuda" if use_cuda else "cpu") if device == "auto" else torch.device(device))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return World(dist.get_rank(), size, torch.device(f"cuda:{local_rank}" if use_cuda else "cpu"))


def teardown(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def leave(code: int) -> None:
    """End a torchrun worker now, once its output is flushed, without the interpreter's shutdown.

    A finished run's gloo process group outlives `teardown`: DistributedDataParallel keeps it referenced
    from C++, so its worker threads are never joined. Such a thread may still be releasing the last
    collective's tensors when the interpreter finalises; it then needs the GIL, cannot take it, and the
    rank aborts ("terminate called without an active exception", SIGABRT) after a run that succeeded,
    so torchrun reports a failure. It happened in about 1 run in 10 on a loaded 2-core machine.
    Everything the run writes is closed by then, so skipping finalisation loses nothing.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def all_true(flag: bool, world: World) -> bool:
    """True only if `flag` is true on every rank, so that all ranks take the same branch.

    A rank that skipped a backward pass which the others ran would leave them waiting forever in
    the gradient all-reduce.
    """
    if world.size == 1:
        return flag
    t = torch.tensor([1 if flag else 0], device=world.device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def gradient_sync(net: torch.nn.Module, sync: bool):
    """Context for one micro-batch's forward and backward: unless `sync`, DDP leaves out its gradient
    all-reduce and the gradients only add up on each rank (`DistributedDataParallel.no_sync`).

    DDP decides in the forward pass whether the backward reduces, so the forward must run inside. A
    later synchronised backward averages the whole accumulated `.grad`, not only its own part.
    """
    if sync or not isinstance(net, DistributedDataParallel):
        return contextlib.nullcontext()
    return net.no_sync()


def sum_over_ranks(values: list[float], world: World) -> list[float]:
    if world.size == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=world.device)
    dist.all_reduce(t)
    return t.tolist()


def rng_states(world: World) -> list[dict]:
    """Every rank's random state, in rank order: torch's CPU generator, and the GPU's when on one.

    Dropout draws from them, and each rank draws as much as its own batches need, so the ranks' states
    part ways; a resumed run gives each rank back its own (`restore_rng`). A collective under DDP.
    """
    state = {"cpu": torch.get_rng_state()}
    if world.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(world.device)
    if world.size == 1:
        return [state]
    states: list = [None] * world.size
    dist.all_gather_object(states, state)
    return states


def restore_rng(states: list[dict], world: World) -> bool:
    """Set this rank's random state from `rng_states`' list; False when that came from another number of
    ranks (nothing is set)."""
    if len(states) != world.size:
        return False
    mine = states[world.rank]
    torch.set_rng_state(mine["cpu"])
    if "cuda" in mine and world.device.type == "cuda":
        torch.cuda.set_rng_state(mine["cuda"], world.device)
    return True


def barrier(world: World) -> None:
    if world.size > 1:
        dist.barrier()


def same_on_all_ranks(model: torch.nn.Module, world: World) -> bool:
    """Whether every rank holds bit-identical weights (a fingerprint of each tensor, compared by min and max).

    DDP keeps replicas in step by averaging gradients; this checks that it did, cheaply, at the end.
    """
    if world.size == 1:
        return True
    fingerprint = torch.stack([p.detach().double().sum() + p.detach().double().square().sum()
                               for p in model.parameters()]).to(world.device)
    low, high = fingerprint.clone(), fingerprint.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    return bool(torch.equal(low, high))
