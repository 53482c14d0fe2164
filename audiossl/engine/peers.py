"""Naming the process that broke a distributed run: heartbeats and last words in the rendezvous store.

When one process of a torchrun job dies, the others only see a failed collective ("Connection
reset by peer" from gloo, a watchdog timeout from NCCL) that names no rank; on a multi-node
job each node's log holds only its own processes. A :class:`PeerMonitor` makes every process

* write where it runs (host, pid) and a heartbeat counter into the job's key-value store (the
  TCPStore of torchrun's agent at ``MASTER_ADDR:MASTER_PORT``, over a connection of its own),
  once per ``interval_s`` from a daemon thread;
* watch its ring neighbour (rank + 1): a heartbeat that stops for ``stale_after_s`` is logged
  as an error naming that rank (the only sign on NCCL, where collectives wait for the timeout);
* leave its last words (the exception) in the store when it fails with an error of its own;
* after a failed collective, :meth:`diagnose` which ranks are gone: those that left last words,
  and those whose heartbeat does not move over a few intervals.

Each process talks to the store once per interval (plus one read of its neighbour), so the load
on the store grows with the number of processes, not with its square. Keys are prefixed with
torchrun's run id, its restart count and the number of runs this process started, so neither an
elastic restart nor a second run in the same job reads its predecessor's beats or last words.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import timedelta

import torch.distributed as dist

from audiossl.errors import UserError

logger = logging.getLogger("audiossl.engine")

#: Words of collective errors caused by a peer that went away (gloo, NCCL, the store).
PEER_FAILURE_MARKS = ("gloo", "nccl", "connection reset", "connection closed", "broken pipe", "timed out")


#: Monitors started by this process: keys of a later run in the same job never meet an earlier run's.
_monitors_started = 0


def _next_run_key() -> str:
    """torchrun's run id / restart count / runs started by this process (the same on every process)."""
    global _monitors_started
    _monitors_started += 1  # every process starts its runs in the same order
    run = os.environ.get("TORCHELASTIC_RUN_ID", "run")
    return f"{run}/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/{_monitors_started}"


class RankFailureError(UserError):
    """Another process of the run died or stopped answering; this one stops too (its message names it)."""


def is_peer_failure(error: BaseException) -> bool:
    """Whether ``error`` is a failed collective (rather than an error of this process's own work)."""
    if isinstance(error, getattr(dist, "DistError", ())):
        return True
    return isinstance(error, RuntimeError) and any(mark in str(error).lower() for mark in PEER_FAILURE_MARKS)


class PeerMonitor:
    """Heartbeats of ``rank`` out of ``world_size`` in the job's store (see the module doc).

    ``run_key`` names the run in the store's keys (default: see :func:`_next_run_key`); every
    process of a run must use the same.

    Without a reachable store (no ``MASTER_ADDR``/``MASTER_PORT``, or the host is gone) it does
    nothing, and :meth:`diagnose` says that it cannot name the rank.
    """

    def __init__(
        self,
        rank: int,
        world_size: int,
        *,
        interval_s: float = 1.0,
        stale_after_s: float = 30.0,
        run_key: str | None = None,
    ):
        self.rank, self.world_size = rank, world_size
        self.interval_s, self.stale_after_s = interval_s, stale_after_s
        self.prefix = f"audiossl/{run_key or _next_run_key()}"
        self.store = self._connect()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.store is not None:
            self._set(f"where/{rank}", f"{socket.gethostname()} pid {os.getpid()}")
            self._beat()
            self._thread = threading.Thread(target=self._run, name="audiossl-heartbeat", daemon=True)
            self._thread.start()

    def _connect(self) -> dist.Store | None:
        host, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
        if not host or not port:
            return None
        try:
            timeout = timedelta(seconds=max(5.0, 5 * self.interval_s))
            return dist.TCPStore(host, int(port), is_master=False, timeout=timeout, wait_for_workers=False)
        except Exception as error:  # the store is an aid: without it the run goes on, unnamed
            logger.debug("peer monitor: no store at %s:%s (%s)", host, port, error)
            return None

    # ------------------------------------------------------------------------- store access

    def _set(self, key: str, value: str) -> bool:
        try:
            self.store.set(f"{self.prefix}/{key}", value)
            return True
        except Exception:
            return False

    def _get(self, key: str) -> str | None:
        try:
            full = f"{self.prefix}/{key}"
            return self.store.get(full).decode() if self.store.check([full]) else None
        except Exception:
            return None

    def _beat(self) -> bool:
        try:
            self.store.add(f"{self.prefix}/beat/{self.rank}", 1)
            return True
        except Exception:
            return False

    def _beats(self) -> dict[int, int] | None:
        """Every rank's heartbeat count (0: never beat); None when the store cannot be read."""
        try:
            return {rank: int(self.store.add(f"{self.prefix}/beat/{rank}", 0)) for rank in range(self.world_size)}
        except Exception:
            return None

    def where(self, rank: int) -> str:
        """``rank N (host H pid P)``, or ``rank N`` when it never said."""
        place = self._get(f"where/{rank}") if self.store is not None else None
        return f"rank {rank} ({place})" if place else f"rank {rank}"

    # ------------------------------------------------------------------------- the thread

    def _run(self) -> None:
        neighbour = (self.rank + 1) % self.world_size
        last_count, last_change, warned = -1, time.monotonic(), False
        while not self._stop.wait(self.interval_s):
            if not self._beat():
                logger.debug("peer monitor: the store stopped answering; heartbeats end")
                return
            if neighbour == self.rank:
                continue
            try:
                count = int(self.store.add(f"{self.prefix}/beat/{neighbour}", 0))
            except Exception:
                return
            now = time.monotonic()
            if count != last_count:
                last_count, last_change, warned = count, now, False
            elif not warned and now - last_change > self.stale_after_s:
                warned = True
                logger.error(
                    "%s sent no heartbeat for %.0f s: it died or hangs; collectives with it fail, or time out "
                    "after run.dist_timeout_s",
                    self.where(neighbour),
                    now - last_change,
                )

    def close(self) -> None:
        """Stop the heartbeat thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5 * self.interval_s)

    # ------------------------------------------------------------------------- failures

    def last_words(self, error: BaseException) -> None:
        """Leave this process's error in the store, so the others can name it and say why."""
        if self.store is not None:
            self._set(f"failed/{self.rank}", f"{type(error).__name__}: {error}"[:2000])

    def diagnose(self, wait_intervals: int = 3) -> list[str]:
        """Descriptions of the ranks that failed (last words) or whose heartbeat stopped.

        Waits ``wait_intervals`` heartbeat intervals to see which counts still move; an empty list
        means every peer still beats (the failure was elsewhere, e.g. the network).
        """
        if self.store is None:
            return []
        first = self._beats()
        if first is None:
            return []
        time.sleep(wait_intervals * self.interval_s)
        second = self._beats() or {}
        found = []
        for rank in range(self.world_size):
            if rank == self.rank:
                continue
            words = self._get(f"failed/{rank}")
            if words:
                found.append(f"{self.where(rank)} failed with {words}")
            elif second.get(rank, -1) == first[rank]:
                found.append(f"{self.where(rank)} stopped: no heartbeat for {wait_intervals * self.interval_s:.3g} s")
        return found

    def failure(self, error: BaseException, step: int, rank_label: str) -> RankFailureError:
        """The error this process stops with after collective ``error`` at ``step``, naming the lost ranks."""
        if self.store is None:
            found, note = [], "; no store to ask which rank (MASTER_ADDR/MASTER_PORT unset)"
        else:
            found = self.diagnose()
            reachable = self._beats() is not None
            note = "" if reachable else "; the job's store is unreachable too (its host, node 0's agent, may be gone)"
        if found:
            who = "; ".join(found)
        else:
            who = "no other rank is known to have failed (the network or the store may have)"
        return RankFailureError(
            f"the run lost a process at step {step + 1}: {who}{note}; {rank_label} stops too "
            f"(collective error: {str(error).strip()[:300]})"
        )


def rank_label(rank: int, world_size: int) -> str:
    """``this process (rank R of N, host H)``, for messages."""
    return f"this process (rank {rank} of {world_size}, host {socket.gethostname()})"
