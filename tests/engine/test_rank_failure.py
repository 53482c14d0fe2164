"""A process that dies makes the others stop, with a message naming it, instead of hanging.

End to end (a rank SIGKILLed under torchrun, the survivor's message): test_fsdp_and_rank_failure.py,
which shares one torchrun job with the FSDP runs. Here, in-process: the monitor names a rank
whose heartbeat stopped, repeats the last words of a rank that failed with an error, and stays
silent about ranks that still beat.
"""

from __future__ import annotations

import time
from datetime import timedelta

import torch.distributed as dist
from scale_helpers import free_port

from audiossl.engine.peers import PeerMonitor, RankFailureError, is_peer_failure


def _store() -> dist.TCPStore:
    return dist.TCPStore("127.0.0.1", free_port(), is_master=True, timeout=timedelta(seconds=10))


def test_monitor_names_silent_and_failed_ranks_but_not_live_ones(monkeypatch):
    server = _store()
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(server.port))
    key = f"monitor-{time.time_ns()}"  # three "processes" in this one: the same run key
    monitors = [PeerMonitor(rank, 3, interval_s=0.1, stale_after_s=60, run_key=key) for rank in range(3)]
    try:
        assert monitors[0].diagnose() == []  # everyone beats
        monitors[1].close()  # rank 1 goes silent
        monitors[2].last_words(ValueError("bad batch in spk01-0003"))
        found = monitors[0].diagnose()
        assert len(found) == 2
        assert found[0].startswith("rank 1 (") and "no heartbeat" in found[0]
        assert found[1].startswith("rank 2 (") and "ValueError: bad batch in spk01-0003" in found[1]
        error = monitors[0].failure(RuntimeError("gloo: Connection reset by peer"), 6, "this process (rank 0 of 3)")
        assert isinstance(error, RankFailureError)
        assert "at step 7" in str(error) and "rank 1 (" in str(error) and "rank 0 of 3" in str(error)
    finally:
        for monitor in monitors:
            monitor.close()


def test_monitor_without_a_store_says_it_cannot_name_the_rank(monkeypatch):
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    monitor = PeerMonitor(0, 2)
    assert monitor.diagnose() == []
    assert "no store" in str(monitor.failure(RuntimeError("gloo"), 0, "this process"))


def test_collective_errors_are_told_from_errors_of_the_work():
    assert is_peer_failure(RuntimeError("[gloo/transport/tcp/pair.cc:538] Read error: Connection reset by peer"))
    assert is_peer_failure(dist.DistBackendError("NCCL watchdog timeout"))
    assert not is_peer_failure(RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x3 and 5x6)"))
    assert not is_peer_failure(ValueError("gloo"))


def test_a_later_run_in_the_same_job_does_not_read_an_earlier_runs_last_words(monkeypatch):
    server = _store()
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(server.port))
    earlier = [PeerMonitor(rank, 2, interval_s=0.1, run_key="job/0/1") for rank in range(2)]
    earlier[1].last_words(ValueError("an error of the first run"))
    later = [PeerMonitor(rank, 2, interval_s=0.1, run_key="job/0/2") for rank in range(2)]
    try:
        assert later[0].diagnose() == []
        assert "an error of the first run" in earlier[0].diagnose()[0]
    finally:
        for monitor in earlier + later:
            monitor.close()
