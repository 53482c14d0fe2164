"""`audiossl superb` resumes: finished pairs are skipped; data config errors name the file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from audiossl.cli.main import main
from audiossl.errors import ConfigError
from audiossl.superb.dataconfig import load_data_config
from audiossl.superb.runner import PairResult, collect_results, parse_upstream, run_superb


def data_dir(path: Path, labels: dict[str, str] | None = None) -> Path:
    """A minimal data dir (tables only; the fake task never reads audio)."""
    path.mkdir(parents=True)
    (path / "wav.scp").write_text("u1 /nowhere/u1.wav\n")
    for name, line in (labels or {}).items():
        (path / name).write_text(f"u1 {line}\n")
    return path


@pytest.fixture
def config(tmp_path) -> Path:
    for part in ("train", "dev", "test"):
        data_dir(tmp_path / "ks" / part, {"utt2kw": "sun"})
        data_dir(tmp_path / "er" / part, {"utt2emo": "sad"})
    path = tmp_path / "superb.yaml"
    path.write_text(
        "tasks:\n"
        "  ks: {train: ks/train, dev: ks/dev, test: ks/test, label: utt2kw}\n"
        "  er:\n    train: er/train\n    test: er/test\n"
    )
    return path


class CountingRunner:
    """A fake pair runner that counts its calls and fails when told to."""

    def __init__(self, fail: set[tuple[str, str]] = frozenset()):
        self.calls: list[tuple[str, str]] = []
        self.fail = set(fail)

    def __call__(self, upstream, data, pair_dir, settings) -> PairResult:
        self.calls.append((upstream.name, data.name))
        if (upstream.name, data.name) in self.fail:
            raise ConfigError(f"boom {upstream.name}/{data.name}")
        value = 0.5 + 0.1 * len(self.calls)
        return PairResult(upstream.name, upstream.spec, data.name, data.spec.metric, True, value, {"m": value})


def test_finished_pairs_are_skipped_and_failed_ones_retried(config, tmp_path):
    tasks = load_data_config(config)
    upstreams = [parse_upstream("fbank"), parse_upstream("ssl=/some/run")]
    first = CountingRunner(fail={("ssl", "er")})
    outcome = run_superb(upstreams, tasks, tmp_path / "out", {"max_steps": 3}, runners={"downstream": first})
    assert first.calls == [("fbank", "ks"), ("fbank", "er"), ("ssl", "ks"), ("ssl", "er")]
    assert outcome.failed and outcome.failed[0][:2] == ("ssl", "er")
    before = {(r.upstream, r.task): r.value for r in collect_results(tmp_path / "out")}
    assert set(before) == {("fbank", "ks"), ("fbank", "er"), ("ssl", "ks")}

    second = CountingRunner()
    outcome = run_superb(upstreams, tasks, tmp_path / "out", {"max_steps": 3}, runners={"downstream": second})
    assert second.calls == [("ssl", "er")]  # only the pair that had not finished
    assert len(outcome.skipped) == 3
    after = {(r.upstream, r.task): r.value for r in collect_results(tmp_path / "out")}
    assert all(after[pair] == value for pair, value in before.items())  # finished results untouched

    with pytest.raises(ConfigError, match="other settings"):  # another budget must not mix with these results
        run_superb(upstreams, tasks, tmp_path / "out", {"max_steps": 9}, runners={"downstream": CountingRunner()})


def test_upstream_names():
    assert parse_upstream("fbank-raw:8000").name == "fbank-raw-8000"
    assert parse_upstream("random:/x/w2v/run").name == "random-w2v"
    assert parse_upstream("/ckpt/w2vbert-fsdd/run").name == "w2vbert-fsdd"
    assert parse_upstream("mine=/a/b.pt") == parse_upstream("mine=/a/b.pt")
    with pytest.raises(ConfigError):
        parse_upstream("a/b=fbank")


def test_unknown_task_names_the_line(config, capsys):
    config.write_text(config.read_text() + "  kws: {train: ks/train, test: ks/test}\n")
    assert main(["superb", "-u", "fbank", "--data-config", str(config), "-o", str(config.parent / "o")]) == 2
    err = capsys.readouterr().err
    assert f"{config}:6" in err and "unknown task 'kws'" in err and "Traceback" not in err


def test_missing_label_file_names_the_line(config, tmp_path):
    (tmp_path / "ks" / "dev" / "utt2kw").unlink()
    with pytest.raises(ConfigError, match=r"label file utt2kw missing in the dev dir") as caught:
        load_data_config(config)
    assert caught.value.line == 2 and caught.value.path == str(config)
    assert main(["superb", "-u", "fbank", "--data-config", str(config), "-o", str(tmp_path / "o")]) == 2


def test_task_not_in_the_config_and_missing_dirs(config, tmp_path):
    with pytest.raises(ConfigError, match="'asr' is not in the data config"):
        load_data_config(config, ["ks", "asr"])
    config.write_text("tasks:\n  ks: {train: nowhere, test: ks/test}\n")
    with pytest.raises(ConfigError, match="not a data dir") as caught:
        load_data_config(config)
    assert caught.value.line == 2


def test_prepare_synth_covers_every_class_in_train(tmp_path):
    from audiossl.data.kaldi import read_table
    from audiossl.superb.datasets import prepare_synth

    config = prepare_synth(tmp_path / "s", speakers=4, utts_per_speaker=6, enhance=False)
    tasks = load_data_config(config)
    assert set(tasks) == {"ks", "ic", "sid", "er", "asr", "pr", "sv", "qbe"}
    for task, label in (("ks", "utt2kw"), ("ic", "utt2intent")):
        seen = set(read_table(tasks[task].train / label).values())
        for part in (tasks[task].dev, tasks[task].test):
            assert set(read_table(part / label).values()) <= seen
    # sv: unseen test speakers; qbe: queries cut from train, which keeps its alignments
    assert not set(read_table(tasks["sv"].train / "utt2spk").values()) & set(
        read_table(tasks["sv"].test / "utt2spk").values()
    )
    ctm_utts = {line.split()[0] for line in (tasks["qbe"].queries / "words.ctm").read_text().splitlines()}
    assert ctm_utts == set(read_table(tasks["qbe"].queries / "wav.scp"))
    phones = read_table(tasks["pr"].test / "text.phn")
    assert set(phones) == set(read_table(tasks["pr"].test / "text"))


def test_stop_reason_reads_the_engines_last_event(tmp_path):
    from audiossl.superb.runner import stop_reason

    log = tmp_path / "train.jsonl"
    assert stop_reason(tmp_path) is None
    log.write_text(
        '{"kind": "event", "event": "start", "step": 0}\n{"kind": "event", "event": "stop", "reason": "SIGTERM"}\n'
    )
    assert stop_reason(tmp_path) == "SIGTERM"
    log.write_text(
        log.read_text() + '{"kind": "event", "event": "start", "step": 3}\n{"kind": "event", "event": "finish"}\n'
    )
    assert stop_reason(tmp_path) is None  # resumed and finished
