"""Calibration and evaluation over several processes: ``torchrun`` / ``accelerate launch`` / multi-node launches.

A launcher starts one process per device and tells each who it is through environment
variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``; torchrun
and ``accelerate launch`` set the same ones, on one node or many). :func:`launch_from_env`
reads them; with ``WORLD_SIZE`` above 1, :func:`setup` joins the process group (once), the
calibration splits its prompt batches across the ranks and adds their statistics up in batch
order (:func:`sum_in_order`, see :func:`cpedit.edit.calibration.calibrate`), so the masks are
those of one process, and the evaluation engine splits its image batches across the ranks (see
:func:`cpedit.eval.engine.render_images`), so that N processes write the same images and the
same manifest as one.

The processes only wait for each other (:func:`barrier`): the images travel through the
images folder, which must therefore be on a filesystem every node sees. The coordination uses
the gloo backend whatever the compute device (it needs no GPU memory, no device guess and no
NCCL timeout while a slower rank still renders); a group already initialised by the caller
(for example by ``accelerate.Accelerator``) is reused, with a gloo group beside it when its
backend is NCCL only.

Importing this module costs no torch.
"""

from __future__ import annotations

import atexit
import os
import pickle
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from cpedit.errors import CpeditError

BARRIER_TIMEOUT = timedelta(hours=6)
"""How long a rank waits for the others (a slower rank may still be loading a model or rendering)."""

_REQUIRED = ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
_HINT = (
    "start the processes with torchrun or accelerate launch (they set RANK, WORLD_SIZE, LOCAL_RANK, "
    "MASTER_ADDR and MASTER_PORT), or unset WORLD_SIZE to run a single process"
)

__all__ = [
    "BARRIER_TIMEOUT",
    "Launch",
    "barrier",
    "is_main_process",
    "launch_from_env",
    "main_first",
    "rank_device",
    "setup",
    "smallest",
    "sum_in_order",
    "world",
]


@dataclass(frozen=True)
class Launch:
    """Who this process is in a multi-process launch."""

    rank: int
    """0 .. world_size - 1 over all nodes; rank 0 writes the shared files."""
    world_size: int
    local_rank: int
    """The process's index on its node: it picks the node's GPU."""

    @property
    def is_main(self) -> bool:
        """Whether this process is rank 0."""
        return self.rank == 0


def _integer(environ: Mapping[str, str], name: str) -> int:
    raw = environ[name]
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise CpeditError(
            f"the environment variable {name}={raw!r} is not a whole number >= 0; {_HINT}",
            reason="distributed_environment",
        )
    return value


def launch_from_env(environ: Mapping[str, str] | None = None) -> Launch | None:
    """The launch this process belongs to, from the launcher's environment variables; None: a single process.

    ``WORLD_SIZE`` unset, empty or 1 means a single process (the other variables are then ignored).

    Raises:
        CpeditError: ``WORLD_SIZE`` is above 1 but the other variables are missing or bad
            (``reason="distributed_environment"``): the message names them.
    """
    env = os.environ if environ is None else environ
    raw = env.get("WORLD_SIZE", "").strip()
    if not raw:
        return None
    world_size = _integer(env, "WORLD_SIZE")
    if world_size <= 1:
        if world_size == 0:
            raise CpeditError(
                f"the environment variable WORLD_SIZE=0 is not a process count; {_HINT}",
                reason="distributed_environment",
            )
        return None
    missing = [name for name in _REQUIRED if not env.get(name, "").strip()]
    if missing:
        raise CpeditError(
            f"WORLD_SIZE={world_size} says this is one of several processes, but {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set; {_HINT}",
            reason="distributed_environment",
        )
    rank, local_rank = _integer(env, "RANK"), _integer(env, "LOCAL_RANK")
    if rank >= world_size or local_rank > rank:
        raise CpeditError(
            f"RANK={rank}, LOCAL_RANK={local_rank} do not fit WORLD_SIZE={world_size} "
            "(0 <= LOCAL_RANK <= RANK < WORLD_SIZE); " + _HINT,
            reason="distributed_environment",
        )
    _integer(env, "MASTER_PORT")
    return Launch(rank=rank, world_size=world_size, local_rank=local_rank)


def _initialised() -> bool:
    if "torch.distributed" not in sys.modules:
        return False  # nothing made a process group: no need to import torch to know it
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def world() -> Launch | None:
    """This process's launch (from the initialised process group, else the environment); None: a single process."""
    if _initialised():
        import torch.distributed as dist

        size = dist.get_world_size()
        if size <= 1:
            return None
        raw = os.environ.get("LOCAL_RANK", "").strip()  # a group the caller made, with any launcher
        local_rank = int(raw) if raw.isdigit() else 0
        return Launch(rank=dist.get_rank(), world_size=size, local_rank=local_rank)
    return launch_from_env()


def is_main_process() -> bool:
    """Whether this process writes the shared results: rank 0 of a launch, or the only process."""
    launch = world()
    return launch is None or launch.is_main


_GLOO_GROUP: Any = None


def setup() -> Launch | None:
    """Join the launch's process group (once per process); None, and nothing done, for a single process.

    Raises:
        CpeditError: The launch environment is incomplete (see :func:`launch_from_env`), this torch
            build has no distributed support, or the other processes cannot be reached
            (``reason="distributed_init"``).
    """
    global _GLOO_GROUP
    launch = world()
    if launch is None:
        return None
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_gloo_available():
        raise CpeditError(
            "this torch build has no torch.distributed gloo support, which a multi-process launch needs; "
            "install a standard PyTorch build or run a single process",
            reason="distributed_init",
        )
    if not dist.is_initialized():
        try:
            dist.init_process_group(
                backend="gloo",
                init_method="env://",
                rank=launch.rank,
                world_size=launch.world_size,
                timeout=BARRIER_TIMEOUT,
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise CpeditError(
                f"cannot join the process group of rank {launch.rank}/{launch.world_size} at "
                f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')} "
                f"({str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}); check that every "
                "node can reach MASTER_ADDR and MASTER_PORT (set GLOO_SOCKET_IFNAME to the network interface "
                "between the nodes if needed)",
                reason="distributed_init",
            ) from None
        atexit.register(_destroy)  # this process made the group: leave it cleanly at exit
    elif _GLOO_GROUP is None and "gloo" not in str(dist.get_backend()).lower():
        _GLOO_GROUP = dist.new_group(backend="gloo", timeout=BARRIER_TIMEOUT)
    return launch


def _destroy() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every process of the launch gets here (nothing for a single process)."""
    if world() is None or not _initialised():
        return
    import torch.distributed as dist

    dist.barrier(group=_GLOO_GROUP)


_T = TypeVar("_T")


def main_first(compute: Callable[[], _T]) -> _T:
    """``compute()`` done once per launch, by rank 0, and its result handed to every rank.

    For work the processes must not each repeat, such as asking the Hub and downloading into
    the cache they share: rank 0 runs ``compute`` while the other ranks wait, then every rank
    returns rank 0's result (sent pickled: it must be picklable). When it fails on rank 0, every
    rank raises: rank 0 its own exception, the others a copy of it (the same
    :class:`~cpedit.errors.CpeditError`, or one with the same message and fields). A single
    process just runs ``compute``.

    Every process of a launch must call it, in the same order (as they all render their share).

    Raises:
        CpeditError: The launch environment is incomplete (see :func:`setup`), or ``compute``
            failed on rank 0.
    """
    launch = setup()
    if launch is None:
        return compute()
    import torch.distributed as dist

    if launch.is_main:
        try:
            value = compute()
        except BaseException as exc:
            dist.broadcast_object_list([(False, _portable(exc))], src=0, group=_GLOO_GROUP)
            raise
        dist.broadcast_object_list([(True, value)], src=0, group=_GLOO_GROUP)
        return value
    received: list[Any] = [None]
    dist.broadcast_object_list(received, src=0, group=_GLOO_GROUP)
    succeeded, payload = received[0]
    if not succeeded:
        raise payload
    return payload


def _portable(exc: BaseException) -> CpeditError:
    """``exc`` as an error the other ranks can unpickle and raise: itself when it survives pickling, else a copy.

    Pickle here is between the ranks of one launch (``broadcast_object_list`` pickles): our own
    processes, never data from a file or the network. The round trip only checks that this
    rank's exception can be rebuilt on the others.
    """
    if isinstance(exc, CpeditError):
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:  # noqa: BLE001 - an __init__ that pickle cannot call again: send its fields
            return CpeditError(str(exc), path=exc.path, repo_id=exc.repo_id, reason=exc.reason, argument=exc.argument)
        return exc
    first_line = str(exc).splitlines()[0][:200] if str(exc) else ""
    return CpeditError(
        f"rank 0 failed ({type(exc).__name__}{': ' + first_line if first_line else ''}); see its output",
        reason="failed_on_main",
    )


def smallest(value: int) -> int:
    """The smallest of every rank's ``value`` (a single process: ``value``); every rank must call it."""
    return _reduce_int(value, "MIN")


def largest(value: int) -> int:
    """The largest of every rank's ``value`` (a single process: ``value``); every rank must call it."""
    return _reduce_int(value, "MAX")


def _reduce_int(value: int, op: str) -> int:
    launch = setup()
    if launch is None:
        return value
    import torch
    import torch.distributed as dist

    tensor = torch.tensor([value], dtype=torch.int64)
    dist.all_reduce(tensor, op=getattr(dist.ReduceOp, op), group=_GLOO_GROUP)
    return int(tensor.item())


def sum_in_order(parts: Mapping[int, Any], *, count: int, like: Any) -> Any:
    """Every rank's ``parts`` (tensors shaped as ``like``, by index ``0 .. count - 1``, each index held by
    one rank), added up in index order from zero on every rank: the same bits as one process
    adding all ``count`` of them in that order (a float sum depends on its order).

    Every rank must call it, with the same ``count`` and ``like``'s shape; the result is on
    ``like``'s device and in float32. A single process adds its own parts.
    """
    import torch

    launch = setup()
    stacked = torch.zeros((count, *like.shape), dtype=torch.float32)
    for index, part in parts.items():
        stacked[index] = part.detach().to("cpu", torch.float32)
    if launch is not None:
        import torch.distributed as dist

        dist.all_reduce(stacked, op=dist.ReduceOp.SUM, group=_GLOO_GROUP)  # one non-zero per entry: exact
    total = torch.zeros(tuple(like.shape), dtype=torch.float32)
    for index in range(count):
        total += stacked[index]
    return total.to(like.device)


def rank_device(device: str) -> str:
    """The device this rank should use for ``device``: ``auto``/``cuda`` become ``cuda:LOCAL_RANK`` under a launch.

    A single process, an explicit ``cuda:N``, ``cpu`` and ``mps`` are left as they are; so is
    ``auto`` on a machine without CUDA. When the launcher shows each process one GPU only
    (``CUDA_VISIBLE_DEVICES`` per process), every rank uses ``cuda:0``.

    Raises:
        CpeditError: More processes on this node than CUDA GPUs (``argument="device"``).
    """
    launch = world()
    if launch is None or device not in ("auto", "cuda"):
        return device
    import torch

    if not torch.cuda.is_available():
        return device  # "cuda" without CUDA: cpedit.models.loading.resolve_device says what is wrong
    count = torch.cuda.device_count()
    if launch.local_rank < count:
        return f"cuda:{launch.local_rank}"
    if count == 1:
        return "cuda:0"
    raise CpeditError(
        f"process LOCAL_RANK={launch.local_rank} has no GPU of its own: this node has {count} CUDA GPUs; "
        f"start at most {count} processes per node (torchrun's nproc-per-node {count}) or choose one device, cuda:N",
        reason="unavailable",
        argument="device",
    )
