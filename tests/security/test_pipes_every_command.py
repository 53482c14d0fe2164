"""wav.scp pipes are refused by every command unless the user allows them (issue 13, security item 2).

A data dir whose ``wav.scp`` holds ``touch MARKER; cat real.wav |`` is given to every command
that reads audio through a data dir, in-process through ``audiossl.cli.main.main``. By default
the marker must never appear, the exit status is 2 and the message names ``wav.scp:LINE`` and
how to allow pipes. With ``audiossl --allow-pipes`` (or ``AUDIOSSL_ALLOW_PIPES=1``, or
``data.allow_pipes: true`` in a pretraining config) the pipe runs and its audio is what is read.

The commands are enumerated from the CLI tree (plugins included): a command that is in neither
:data:`READERS` nor :data:`NOT_READERS` fails :func:`test_every_command_is_classified`, so a new
command cannot be forgotten here.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import typer

from audiossl.cli.main import PIPES_ENV as CLI_PIPES_ENV
from audiossl.cli.main import app, main
from audiossl.data.kaldi import DataDir
from audiossl.data.wav_scp import PIPES_ENV
from audiossl.testing.downstream import TINY_PRETRAIN_OVERRIDES, tiny_corpus, tiny_pretrained

#: The line of wav.scp that holds the pipe (not the first: the message must name the right one).
PIPE_LINE = 3


def cli_commands() -> set[tuple[str, ...]]:
    """Every leaf command of the ``audiossl`` CLI tree (installed plugins mounted), as name paths."""
    root = typer.main.get_command(app)
    found: set[tuple[str, ...]] = set()

    def walk(command: Any, path: tuple[str, ...], context: Any) -> None:
        if hasattr(command, "list_commands"):  # a group (typer bundles its own click: no isinstance)
            for name in command.list_commands(context):
                sub = command.get_command(context, name)
                walk(sub, (*path, name), sub.context_class(sub, parent=context))
        else:
            found.add(path)

    walk(root, (), root.context_class(root))
    return found


def make_piped(clean: Path, out: Path) -> tuple[Path, Path]:
    """A copy of the data dir ``clean`` whose wav.scp line PIPE_LINE is a pipe creating a marker; (dir, marker)."""
    shutil.copytree(clean, out)
    marker = out.parent / f"{out.name}-MARKER"
    lines = (out / "wav.scp").read_text(encoding="utf-8").splitlines()
    key, path = lines[PIPE_LINE - 1].split(maxsplit=1)
    lines[PIPE_LINE - 1] = f"{key} touch {marker}; cat {path} |"
    (out / "wav.scp").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out, marker


@dataclass
class Setup:
    """The clean corpus, its piped copy and what commands need besides a data dir (built on first use)."""

    root: Path
    clean: Path
    piped: Path
    marker: Path

    def __post_init__(self) -> None:
        self._built: dict[str, Path] = {}

    def _once(self, name: str, build: Callable[[Path], None]) -> Path:
        if name not in self._built:
            path = self.root / "prereq" / name
            build(path)
            self._built[name] = path
        return self._built[name]

    @property
    def pipe_utt(self) -> str:
        return DataDir.load(self.clean).utterance_ids[PIPE_LINE - 1]

    @property
    def pipe_speaker(self) -> str:
        return DataDir.load(self.clean).utt2spk[self.pipe_utt]

    @property
    def a_wav(self) -> str:
        return DataDir.load(self.clean).wav_scp[self.pipe_utt]

    @property
    def pretrained(self) -> Path:
        return self._once("ssl", lambda path: tiny_pretrained(path, self.clean, steps=1))

    def _cli(self, *argv: str) -> None:
        assert main(list(argv)) == 0, argv

    @property
    def kmeans(self) -> Path:
        return self._once(
            "kmeans",
            lambda p: self._cli("kmeans", "fit", "--data", str(self.clean), "--out", str(p), "--n-clusters", "2"),
        )

    def _downstream(self, plugin: str, upstream: str) -> Path:
        return self._once(
            plugin,
            lambda p: self._cli(plugin, "train", str(self.clean), "-o", str(p), "-u", upstream, "--max-steps", "1"),
        )

    @property
    def asr_run(self) -> Path:
        return self._downstream("asr", "fbank")

    @property
    def er_run(self) -> Path:
        return self._downstream("er", "fbank-raw")

    @property
    def tts_run(self) -> Path:
        return self._once("tts", lambda p: self._cli("tts", "train", str(self.clean), "-o", str(p), "--max-steps", "1"))

    @property
    def s2s_run(self) -> Path:
        return self._once(
            "s2s",
            lambda p: self._cli("s2s", "train", str(self.clean), "-o", str(p), "-u", "fbank", "--max-steps", "1"),
        )

    @property
    def st_run(self) -> Path:
        return self._once(
            "st",
            lambda p: self._cli("st", "train", str(self.clean), "-o", str(p), "-u", "fbank", "--max-steps", "1"),
        )

    @property
    def cls_run(self) -> Path:
        return self._once(
            "cls",
            lambda p: self._cli(
                "cls", "train", str(self.clean), "--label", "spk", "-o", str(p), "-u", "fbank-raw", "--max-steps", "1"
            ),
        )

    @property
    def pr_run(self) -> Path:
        return self._downstream("pr", "fbank")

    @property
    def pairs(self) -> Path:
        return self._once("pairs", lambda p: self._cli("se", "make-pairs", str(self.clean), "-o", str(p)))

    @property
    def mixtures(self) -> Path:
        return self._once("mixtures", lambda p: self._cli("ss", "make-mixtures", str(self.clean), "-o", str(p)))

    @property
    def piped_pairs(self) -> Path:
        return self._once("pairs-piped", lambda p: make_piped(self.pairs, p))

    @property
    def piped_mixtures(self) -> Path:
        return self._once("mixtures-piped", lambda p: make_piped(self.mixtures, p))

    def _enhance_run(self, plugin: str, data: Path) -> Path:
        return self._once(
            f"{plugin}-run",
            lambda p: self._cli(plugin, "train", str(data), "-o", str(p), "-u", "fbank", "--max-steps", "1"),
        )

    @property
    def se_run(self) -> Path:
        return self._enhance_run("se", self.pairs)

    @property
    def ss_run(self) -> Path:
        return self._enhance_run("ss", self.mixtures)

    @property
    def vocoder(self) -> Path:
        return self._once(
            "vocoder",
            lambda p: self._cli(
                "vc", "train-vocoder", "--model", str(self.pretrained), "--data", str(self.clean), "--out", str(p),
                "--kind", "mel-gl", "--steps", "1", "--batch-size", "2", "--segment-frames", "8",
            ),
        )  # fmt: skip


def _tiny_pretrain_sets() -> list[str]:
    return [item for override in TINY_PRETRAIN_OVERRIDES for item in ("--set", override)] + ["--set", "run.max_steps=1"]


#: Commands that read audio of a data dir -> their argv on the piped dir (``out``: a fresh output path).
READERS: dict[tuple[str, ...], Callable[[Setup, Path], list[str]]] = {
    ("data", "validate"): lambda s, out: ["data", "validate", str(s.piped)],
    ("data", "fix"): lambda s, out: ["data", "fix", str(s.piped)],
    ("features", "stats"): lambda s, out: ["features", "stats", str(s.piped), "--out", str(out / "stats.npz")],
    ("features", "plot"): lambda s, out: ["features", "plot", str(s.piped), "--out", str(out / "f.png")],
    ("pretrain",): lambda s, out: [
        "pretrain", "-c", "mspm-ast-tiny", *_tiny_pretrain_sets(), "--data", str(s.piped), "--out", str(out / "run")
    ],
    ("extract",): lambda s, out: [
        "extract", "--model", str(s.pretrained), "--data", str(s.piped), "--out", str(out / "x")
    ],
    ("kmeans", "fit"): lambda s, out: [
        "kmeans", "fit", "--data", str(s.piped), "--out", str(out / "km"), "--n-clusters", "2"
    ],
    ("kmeans", "label"): lambda s, out: [
        "kmeans", "label", "--model", str(s.kmeans), "--data", str(s.piped), "--out", str(out / "labels")
    ],
    ("hubert", "iterate"): lambda s, out: [
        "hubert", "iterate", "--data", str(s.piped), "--out", str(out / "h"), "--clusters", "2", "--steps", "1"
    ],
    ("dino", "cluster"): lambda s, out: [
        "dino", "cluster", str(s.pretrained), "--data", str(s.piped), "--k", "2", "-o", str(out / "d")
    ],
    ("asr", "train"): lambda s, out: [
        "asr", "train", str(s.piped), "-o", str(out / "r"), "-u", "fbank", "--max-steps", "1"
    ],
    ("asr", "decode"): lambda s, out: ["asr", "decode", str(s.asr_run), str(s.piped), "-o", str(out / "dec")],
    ("er", "train"): lambda s, out: [
        "er", "train", str(s.piped), "-u", "fbank-raw", "-o", str(out / "r"), "--max-steps", "1"
    ],
    ("er", "evaluate"): lambda s, out: ["er", "evaluate", str(s.er_run), str(s.piped), "-o", str(out / "e")],
    ("er", "cross-validate"): lambda s, out: [
        "er", "cross-validate", str(s.piped), "-u", "fbank-raw", "-o", str(out / "cv"), "--max-steps", "1",
        "--num-folds", "2",
    ],
    ("sv", "train"): lambda s, out: [
        "sv", "train", str(s.piped), "-u", "fbank-raw", "-o", str(out / "r"), "--max-steps", "1"
    ],
    ("sv", "embed"): lambda s, out: ["sv", "embed", str(s.piped), "-o", str(out / "e"), "-u", str(s.pretrained)],
    ("sv", "evaluate"): lambda s, out: [
        "sv", "evaluate", str(s.piped), "-o", str(out / "e"), "-u", "fbank-raw", "--num-trials", "4"
    ],
    ("diarization", "make-corpus"): lambda s, out: [
        "diarization", "make-corpus", str(s.piped), "-o", str(out / "c"), "--recordings", "2,1,1"
    ],
    ("vc", "train-vocoder"): lambda s, out: [
        "vc", "train-vocoder", "--model", str(s.pretrained), "--data", str(s.piped), "--out", str(out / "v"),
        "--kind", "mel-gl", "--steps", "1", "--batch-size", "2", "--segment-frames", "8",
    ],
    ("vc", "convert"): lambda s, out: [
        "vc", "convert", s.a_wav, "--target", str(s.piped), "--target-speaker", s.pipe_speaker,
        "--model", str(s.pretrained), "--vocoder", str(s.vocoder), "-o", str(out / "o.wav"),
    ],
    ("vc", "evaluate"): lambda s, out: [
        "vc", "evaluate", "--model", str(s.pretrained), "--vocoder", str(s.vocoder), "--data", str(s.piped),
        "--out", str(out / "ev"), "--pairs", "2",
    ],
    ("data", "export-shar"): lambda s, out: ["data", "export-shar", str(s.piped), str(out / "shar")],
    ("kmeans", "sample"): lambda s, out: ["kmeans", "sample", "--data", str(s.piped), "--dump-dir", str(out / "d")],
    ("tts", "train"): lambda s, out: ["tts", "train", str(s.piped), "-o", str(out / "t"), "--max-steps", "1"],
    ("tts", "train-vocoder"): lambda s, out: [
        "tts", "train-vocoder", str(s.piped), "-o", str(out / "v"), "--steps", "1"
    ],
    ("tts", "evaluate"): lambda s, out: ["tts", "evaluate", str(s.tts_run), str(s.piped), "-o", str(out / "e")],
    ("st", "train"): lambda s, out: [
        "st", "train", str(s.piped), "-o", str(out / "t"), "-u", "fbank", "--max-steps", "1"
    ],
    ("st", "translate"): lambda s, out: ["st", "translate", str(s.st_run), str(s.piped), "-o", str(out / "e")],
    ("s2s", "train"): lambda s, out: [
        "s2s", "train", str(s.piped), "-o", str(out / "t"), "-u", "fbank", "--max-steps", "1"
    ],
    ("s2s", "convert"): lambda s, out: ["s2s", "convert", str(s.s2s_run), str(s.piped), "-o", str(out / "c")],
    ("s2s", "evaluate"): lambda s, out: ["s2s", "evaluate", str(s.s2s_run), str(s.piped), "-o", str(out / "e")],
    ("cls", "train"): lambda s, out: [
        "cls", "train", str(s.piped), "--label", "spk", "-u", "fbank-raw", "-o", str(out / "r"), "--max-steps", "1"
    ],
    ("cls", "evaluate"): lambda s, out: ["cls", "evaluate", str(s.cls_run), str(s.piped), "-o", str(out / "e")],
    ("cls", "cross-validate"): lambda s, out: [
        "cls", "cross-validate", str(s.piped), "--label", "spk", "-u", "fbank-raw", "-o", str(out / "cv"),
        "--max-steps", "1", "--num-folds", "2",
    ],
    ("pr", "train"): lambda s, out: [
        "pr", "train", str(s.piped), "-o", str(out / "r"), "-u", "fbank", "--max-steps", "1"
    ],
    ("pr", "evaluate"): lambda s, out: ["pr", "evaluate", str(s.pr_run), str(s.piped), "-o", str(out / "e")],
    ("se", "make-pairs"): lambda s, out: ["se", "make-pairs", str(s.piped), "-o", str(out / "p")],
    ("se", "pair-dirs"): lambda s, out: ["se", "pair-dirs", str(s.clean), str(s.piped), "-o", str(out / "p")],
    ("se", "train"): lambda s, out: [
        "se", "train", str(s.piped_pairs), "-o", str(out / "r"), "-u", "fbank", "--max-steps", "1"
    ],
    ("se", "evaluate"): lambda s, out: ["se", "evaluate", str(s.se_run), str(s.piped_pairs), "-o", str(out / "e")],
    ("ss", "make-mixtures"): lambda s, out: ["ss", "make-mixtures", str(s.piped), "-o", str(out / "m")],
    ("ss", "train"): lambda s, out: [
        "ss", "train", str(s.piped_mixtures), "-o", str(out / "r"), "-u", "fbank", "--max-steps", "1"
    ],
    ("ss", "evaluate"): lambda s, out: ["ss", "evaluate", str(s.ss_run), str(s.piped_mixtures), "-o", str(out / "e")],
    ("qbe", "evaluate"): lambda s, out: [
        "qbe", "evaluate", str(s.piped), "-u", "fbank", "--queries-from", str(s.clean), "-o", str(out / "q")
    ],
    ("data", "filter"): lambda s, out: ["data", "filter", str(s.piped), "--drop-bad", "-o", str(out / "f")],
}  # fmt: skip

#: Commands that never read a data dir's audio, and why (checked by review when a command is added).
NOT_READERS: dict[tuple[str, ...], str] = {
    ("export",): "reads a checkpoint, feeds it random audio",
    ("report",): "reads result files of an experiment dir",
    ("data", "synth"): "writes a corpus",
    ("data", "prepare-fsdd"): "reads a folder of audio files, writes wav.scp paths",
    ("data", "prepare-librispeech"): "reads a corpus folder, writes wav.scp paths",
    ("data", "prepare-voxceleb"): "reads a corpus folder, writes wav.scp paths",
    ("data", "prepare-iemocap"): "reads a corpus folder, writes wav.scp paths",
    ("data", "prepare-vctk"): "reads a corpus folder, writes wav.scp paths",
    ("data", "download"): "downloads archives",
    ("data", "split"): "tables only: copies wav.scp values, never runs them",
    ("data", "subset"): "tables only",
    ("data", "folds"): "tables only",
    ("data", "combine"): "tables only",
    ("features", "list"): "lists front-ends",
    ("encoders", "list"): "lists encoders",
    ("objectives", "list"): "lists objectives",
    ("interop", "list"): "lists formats",
    ("interop", "inspect"): "reads a checkpoint",
    ("plugins", "list"): "lists plugins",
    ("asr", "score"): "reads text files",
    ("er", "folds"): "tables only",
    ("sv", "score"): "reads trials and embeddings",
    ("sv", "make-trials"): "tables only (utt2spk)",
    ("diarization", "train-segmentation"): "reads a make-corpus dir through pyannote (database.yml, wav/), no wav.scp",
    ("diarization", "diarize"): "reads audio files or a make-corpus dir's wav/, no wav.scp",
    ("diarization", "tune"): "reads a make-corpus dir through pyannote, no wav.scp",
    ("diarization", "evaluate"): "reads RTTM files",
    ("extract-merge",): "merges finished shard outputs (feature files), no audio",
    ("features", "merge-stats"): "merges statistics parts",
    ("kmeans", "merge-labels"): "merges label-store shards",
    ("kmeans", "merge-sample"): "merges feature-dump parts",
    ("st", "score"): "reads hypothesis and reference text",
    ("tts", "synthesize"): "text in, wav out",
    ("superb", "leaderboard"): "reads the result JSON files of a superb output dir",
    ("superb", "prepare"): "reads a corpus folder (audio headers), writes wav.scp paths",
    ("superb", "prepare-fsdd"): "reads a folder of audio files, writes wav.scp paths",
    ("superb", "prepare-synth"): "writes a corpus",
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Setup:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("pipes")
    clean = tiny_corpus(root / "clean", speakers=6, utts_per_speaker=2)
    shutil.copy(clean / "text", clean / "text.qaa")  # a translation table for `st` (ids as wav.scp's)
    piped, marker = make_piped(clean, root / "piped")
    return Setup(root, clean, piped, marker)


@pytest.fixture(autouse=True)
def _no_pipe_policy(monkeypatch):
    """Every test starts with the process policy unset (pipes refused)."""
    monkeypatch.delenv(PIPES_ENV, raising=False)


def test_every_command_is_classified() -> None:
    commands = cli_commands()
    unclassified = commands - set(READERS) - set(NOT_READERS)
    assert not unclassified, f"classify these commands in {__name__}: READERS or NOT_READERS: {sorted(unclassified)}"
    assert not set(READERS) & set(NOT_READERS)
    assert CLI_PIPES_ENV == PIPES_ENV  # the CLI spells the variable without importing the loader


@pytest.mark.parametrize("command", sorted(READERS), ids=" ".join)
def test_every_reader_refuses_pipes_by_default(command, setup, tmp_path, capsys) -> None:
    if command not in cli_commands():
        pytest.skip(f"plugin of {' '.join(command)} is not installed")
    argv = READERS[command](setup, tmp_path)  # prerequisites are built here, from the clean corpus
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    # the piped dir the command reads: the piped corpus, or a piped copy of a dir made from the clean one
    piped = next((Path(a) for a in argv if a.endswith("-piped")), setup.piped)
    marker = piped.parent / f"{piped.name}-MARKER"
    assert not setup.marker.exists() and not marker.exists(), "the pipe ran"
    assert f"{piped / 'wav.scp'}:{PIPE_LINE}: pipe command" in err, err
    assert "--allow-pipes" in err and f"{PIPES_ENV}=1" in err
    assert "Traceback" not in err
    assert PIPES_ENV not in __import__("os").environ


@pytest.mark.parametrize("how", ["flag", "env"])
def test_allowed_pipes_run_and_their_audio_is_read(how, setup, tmp_path, monkeypatch, capsys) -> None:
    piped, marker = make_piped(setup.clean, tmp_path / "piped")
    clean_stats, piped_stats = tmp_path / "clean.npz", tmp_path / "piped.npz"
    assert main(["features", "stats", str(setup.clean), "--out", str(clean_stats)]) == 0
    prefix = ["--allow-pipes"] if how == "flag" else []
    if how == "env":
        monkeypatch.setenv(PIPES_ENV, "1")
    assert main([*prefix, "data", "validate", str(piped)]) == 0  # reads every recording, checks utt2dur
    assert marker.exists()
    marker.unlink()
    assert main([*prefix, "features", "stats", str(piped), "--out", str(piped_stats)]) == 0
    assert marker.exists()
    with np.load(clean_stats) as clean, np.load(piped_stats) as through_pipe:
        for name in clean.files:  # the pipe's audio is the file's audio
            np.testing.assert_array_equal(through_pipe[name], clean[name])
    if how == "flag":
        assert PIPES_ENV not in __import__("os").environ  # the flag lasts one command


def test_pretrain_config_allows_pipes(setup, tmp_path) -> None:
    piped, marker = make_piped(setup.clean, tmp_path / "piped")
    for table in ("utt2dur", "utt2num_samples"):  # durations then come from the audio headers, through the pipe
        (piped / table).unlink(missing_ok=True)
    base = ["pretrain", "-c", "mspm-ast-tiny", *_tiny_pretrain_sets(), "--data", str(piped)]
    assert main([*base, "--out", str(tmp_path / "refused")]) == 2 and not marker.exists()
    assert main([*base, "--set", "data.allow_pipes=true", "--out", str(tmp_path / "run")]) == 0
    assert marker.exists()
    assert PIPES_ENV not in __import__("os").environ  # allowed for the run only


def test_no_pipes_refuses_even_when_allowed(setup, tmp_path, capsys) -> None:
    piped, marker = make_piped(setup.clean, tmp_path / "piped")
    assert main(["--allow-pipes", "data", "validate", "--no-pipes", str(piped)]) == 2
    assert main(["--allow-pipes", "data", "fix", "--no-pipes", str(piped)]) == 2
    assert not marker.exists()
    err = capsys.readouterr().err
    assert f"{piped / 'wav.scp'}:{PIPE_LINE}: pipe command" in err and "refused by --no-pipes" in err


@pytest.mark.parametrize("command", [("data", "split"), ("data", "subset"), ("data", "combine"), ("sv", "make-trials")])
def test_table_commands_never_run_pipes(command, setup, tmp_path) -> None:
    if command not in cli_commands():
        pytest.skip(f"plugin of {' '.join(command)} is not installed")
    out = tmp_path / "out"
    argv = {
        ("data", "split"): ["data", "split", str(setup.piped), str(out)],
        ("data", "subset"): ["data", "subset", str(setup.piped), str(out)],
        ("data", "combine"): ["data", "combine", str(out), str(setup.piped)],
        ("sv", "make-trials"): ["sv", "make-trials", str(setup.piped), "-o", str(out / "trials"), "--num-trials", "4"],
    }[command]
    assert main(["--allow-pipes", *argv]) == 0  # even allowed, a table-only command has no reason to run one
    assert not setup.marker.exists()
