"""Process-wide state in one place: settings, thread pools, locks; safe across fork and spawn.

Keras's ``use_multiprocessing=True`` forks its worker processes after the
parent has read batches (Keras itself reads some to learn the output
signature). A forked child inherits every Python object but only the thread
that called ``fork``: a thread pool whose threads stayed in the parent accepts
work and never runs it, and a lock that one of those threads held stays held
forever. Either is a training run that hangs.

So fastvid's pools and locks are made here, lazily, and a forked child forgets
them (``os.register_at_fork``): it starts clean and builds what it needs on
first use. Objects that hold locks of their own register a reset with
:func:`reset_after_fork`. Objects pickled to spawned processes carry no pools
or locks (their ``__getstate__`` drops them), so they rebuild there too.

Settings that come from the environment are read once, here, and a bad value
is an error that names the variable.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from typing import Any

log = logging.getLogger(__name__)

ENV_THREADS = "FASTVID_THREADS"
ENV_INDEX_CACHE = "FASTVID_INDEX_CACHE"
ENV_INDEX_MEMORY = "FASTVID_INDEX_MEMORY"

DEFAULT_INDEX_MEMORY = 512 << 20  # bytes of packet indexes kept per process


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _env_int(name: str, minimum: int) -> int | None:
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {text!r}") from None
    if value < minimum:
        raise ValueError(f"environment variable {name} must be >= {minimum}, got {value}")
    return value


@dataclass(frozen=True)
class Settings:
    """fastvid's environment settings, read once per process (see :func:`settings`).

    Attributes:
        threads: ``FASTVID_THREADS``: the thread count of every fastvid pool
            (decoding, processing, indexing, conversion); None: one per core.
        index_cache_dir: ``FASTVID_INDEX_CACHE``: folder where packet indexes are
            stored, so later runs skip the scan; None: memory only.
        index_memory_bytes: ``FASTVID_INDEX_MEMORY``: bytes of packet indexes kept
            in memory per process (default 512 MiB, about 26 bytes a packet).
    """

    threads: int | None
    index_cache_dir: str | None
    index_memory_bytes: int


@cache
def settings() -> Settings:
    """The settings of this process, from the environment (read on first call)."""
    memory = _env_int(ENV_INDEX_MEMORY, 0)
    return Settings(
        threads=_env_int(ENV_THREADS, 1),
        index_cache_dir=os.environ.get(ENV_INDEX_CACHE) or None,
        index_memory_bytes=DEFAULT_INDEX_MEMORY if memory is None else memory,
    )


def reload_settings() -> Settings:
    """Read the environment again (for tests and programs that change it at run time)."""
    settings.cache_clear()
    return settings()


def default_threads() -> int:
    """The one default thread count of fastvid's pools: ``FASTVID_THREADS`` or the cores."""
    return settings().threads or usable_cores()


# ------------------------------------------------------------------------------ pools

_pools: dict[tuple[str, int], ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def pool(name: str, workers: int) -> ThreadPoolExecutor:
    """The process's pool ``name`` with ``workers`` threads, created on first use.

    One pool per (name, size) for the life of the process (a forked child
    gets fresh ones), so repeated calls never leak threads.
    """
    key = (name, max(1, int(workers)))
    with _pools_lock:
        executor = _pools.get(key)
        if executor is None:
            executor = ThreadPoolExecutor(key[1], thread_name_prefix=f"fastvid-{name}")
            _pools[key] = executor
        return executor


def shutdown_pools(name: str | None = None) -> None:
    """Stop the pools called ``name`` (every pool when None); later calls make new ones."""
    with _pools_lock:
        doomed = [k for k in _pools if name is None or k[0] == name]
        executors = [_pools.pop(k) for k in doomed]
    for executor in executors:
        executor.shutdown(wait=False, cancel_futures=True)


def on_pool_thread(name: str) -> bool:
    """True in a thread of one of this process's pools called ``name``."""
    return threading.current_thread().name.startswith(f"fastvid-{name}")


def run_tasks(
    fn: Callable[..., Any], tasks: Iterable[tuple], threads: int, name: str = "ops"
) -> None:
    """Run ``fn(*task)`` for every task on the pool ``name``, in ``threads`` shares.

    One job per thread, each running an interleaved share of the tasks: per-task
    jobs cost more in hand-offs than cheap tasks (an absdiff at 112x112) take to
    run. Runs inline with one thread, one task, or when already on a thread of
    that pool (waiting there for the pool could deadlock). The first exception
    of a task is raised here, in the caller.
    """
    tasks = list(tasks)
    if threads <= 1 or len(tasks) <= 1 or on_pool_thread(name):
        for task in tasks:
            fn(*task)
        return

    def run_share(share: list[tuple]) -> None:
        for task in share:
            fn(*task)

    shares = [tasks[k::threads] for k in range(min(threads, len(tasks)))]
    list(pool(name, threads).map(run_share, shares))


# ------------------------------------------------------------------------------ fork

_fork_callbacks: list[Callable[[], None]] = []
_fork_objects: weakref.WeakSet = weakref.WeakSet()
_owner_pid = os.getpid()


def reset_after_fork(target: Callable[[], None] | object) -> None:
    """Have a forked child call ``target()`` (a function) or ``target._after_fork()``.

    Objects are held weakly: registering one does not keep it alive.
    """
    if callable(target) and not hasattr(target, "_after_fork"):
        _fork_callbacks.append(target)
    else:
        _fork_objects.add(target)


def forked_child() -> bool:
    """True in a process forked from the one that imported fastvid."""
    return os.getpid() != _owner_pid


def _in_child() -> None:
    global _pools_lock, _owner_pid
    _pools.clear()  # their threads live in the parent: never submit to them here
    _pools_lock = threading.Lock()
    for callback in _fork_callbacks:
        callback()
    for obj in list(_fork_objects):
        obj._after_fork()
    # _owner_pid stays the parent's: forked_child() tells a worker it is one


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_in_child)
