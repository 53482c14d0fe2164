"""A process that dies makes the others stop, with a message naming it, instead of hanging.

End to end: two gloo processes under torchrun; rank 1 SIGKILLs itself after step 2 (no handler,
no ``finally``: an out-of-memory kill or a lost node). Rank 0 must exit non-zero, within the
launch bound (a hang fails the test), with its own message naming rank 1 (torchrun's summary
names it too, so the check looks for the engine's words). In-process: the monitor names a rank
whose heartbeat stopped, repeats the last words of a rank that failed with an error, and stays
silent about ranks that still beat.
"""

from __future__ import annotations

import re
import time
from datetime import timedelta

import torch.distributed as dist
from scale_helpers import HERE, free_port, mspm_config, run_all, torchrun

from audiossl.engine.peers import PeerMonitor, RankFailureError, is_peer_failure


def test_a_killed_rank_is_named_by_the_survivor_which_stops(engine_corpus, tmp_path):
    config = mspm_config(tmp_path / "tiny.yaml", run={"dist_timeout_s": 60})
    command = torchrun(
        "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
        str(HERE / "rank_failure_worker.py"), str(config), str(engine_corpus), str(tmp_path / "run"), "1", "2",
    )  # fmt: skip
    [(rc, output)] = run_all([command], cwd=tmp_path)
    assert rc != 0
    survivor = [line for line in output.splitlines() if "the run lost a process" in line]
    assert survivor, output[-4000:]
    assert re.search(r"rank 1 \(\S+ pid \d+\) stopped: no heartbeat", survivor[0]), survivor[0]
    assert "rank 0 of 2" in survivor[0]  # and which process says so
    assert "RankFailureError" in output


def _store() -> dist.TCPStore:
    return dist.TCPStore("127.0.0.1", free_port(), is_master=True, timeout=timedelta(seconds=10))


def test_monitor_names_silent_and_failed_ranks_but_not_live_ones(monkeypatch):
    server = _store()
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(server.port))
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", f"monitor-{time.time_ns()}")
    monitors = [PeerMonitor(rank, 3, interval_s=0.1, stale_after_s=60) for rank in range(3)]
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
