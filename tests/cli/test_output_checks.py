"""Every command that writes checks its output up front: an unwritable output is exit 2 naming the path.

Two kinds of unwritable place: a read-only dir (chmod 0o555; root ignores permissions, so that case
is skipped as root) and a path under a regular file (``some_file/out``), which fails for root too,
so these tests never skip everything. Every other argument is bogus (missing files): the output
check runs first, before any input is read, so the error must be about the output.
"""

from __future__ import annotations

import os
import stat

import pytest

from audiossl.cli.main import main
from audiossl.errors import UserError
from audiossl.fileio import ensure_writable_dir, ensure_writable_file

ROOT = os.geteuid() == 0

#: (command line with {out} for the output and {x} for a missing input, whether {out} is a file).
COMMANDS: list[tuple[str, bool]] = [
    ("data synth {out}", False),
    ("data fix {out}", False),
    ("data prepare-fsdd {x} {out}", False),
    ("data split {x} {out}", False),
    ("data subset {x} {out}", False),
    ("data export-shar {x} {out}", False),
    ("data folds {x} {out}", False),
    ("data download fsdd {out}", False),
    ("data prepare-librispeech {x} {out}", False),
    ("data prepare-voxceleb {x} --out {out}", False),
    ("data prepare-iemocap {x} {out}", False),
    ("data prepare-vctk {x} {out}", False),
    ("data combine {out} {x}", False),
    ("dino cluster {x} --data {x} --k 2 --out {out}", False),
    ("features plot {x} --out {out}", True),
    ("features stats {x} --out {out}", True),
    ("hubert iterate --data {x} --out {out}", False),
    ("kmeans fit --data {x} --out {out}", False),
    ("kmeans label --model {x} --data {x} --out {out}", False),
    ("kmeans merge-labels {out}", False),
    ("features merge-stats {out}", True),
    ("extract-merge {out}", False),
    ("pretrain --config mspm-ast-tiny --data {x} --out {out}", False),
    ("extract --model {x} --data {x} -o {out}", False),
    ("export --model {x} -o {out}", True),
    ("report {x} -o {out}", True),
    ("asr train {x} -u fbank --out {out}", False),
    ("asr decode {x} {x} --out {out}", False),
    ("asr score {x} {x} --out {out}", True),
    ("st train {x} -u fbank --out {out}", False),
    ("st translate {x} {x} --out {out}", False),
    ("st score {x} {x} --out {out}", True),
    ("tts train {x} --out {out}", False),
    ("tts synthesize {x} hello --speaker s -o {out}", True),
    ("tts evaluate {x} {x} --out {out}", False),
    ("tts train-vocoder {x} --out {out}", False),
    ("s2s train {x} -u fbank --out {out}", False),
    ("s2s convert {x} {x} --out {out}", False),
    ("s2s evaluate {x} {x} --out {out}", False),
    ("er train {x} -u fbank --out {out}", False),
    ("er evaluate {x} {x} --out {out}", False),
    ("er folds {x} --out {out}", False),
    ("er cross-validate {x} -u fbank --out {out}", False),
    ("sv train {x} -u fbank --out {out}", False),
    ("sv embed {x} --upstream fbank --out {out}", True),
    ("sv score {x} -e {x} --out {out}", True),
    ("sv evaluate {x} --upstream fbank --out {out}", False),
    ("sv make-trials {x} --out {out}", True),
    ("vc train-vocoder --model {x} --data {x} --out {out}", False),
    ("vc convert {x} --target {x} --model {x} --vocoder {x} --out {out}", True),
    ("vc evaluate --model {x} --vocoder {x} --data {x} --out {out}", False),
    ("cls train {x} --label kw -u fbank --out {out}", False),
    ("cls evaluate {x} {x} --out {out}", False),
    ("cls cross-validate {x} --label kw -u fbank --out {out}", False),
    ("pr train {x} -u fbank --out {out}", False),
    ("pr evaluate {x} {x} --out {out}", False),
    ("se make-pairs {x} --out {out}", False),
    ("se pair-dirs {x} {x} --out {out}", False),
    ("se train {x} -u fbank --out {out}", False),
    ("se evaluate {x} {x} --out {out}", False),
    ("ss make-mixtures {x} --out {out}", False),
    ("ss train {x} -u fbank --out {out}", False),
    ("ss evaluate {x} {x} --out {out}", False),
    ("qbe evaluate {x} -u fbank --queries-from {x} --out {out}", False),
    ("superb -u fbank --data-config {x} --out {out}", False),
    ("superb prepare-synth {out}", False),
    ("superb prepare-fsdd {x} {out}", False),
    ("superb prepare speech-commands {x} {out}", False),
    ("data filter {x} --drop-bad --out {out}", False),
    ("diarization make-corpus {x} --out {out}", False),
    ("diarization train-segmentation {x} --out {out}", True),
    ("diarization diarize {x} --out {out} --segmentation {x} --model {x}", True),
    ("diarization tune {x} --segmentation {x} --model {x} --out {out}", True),
    ("diarization evaluate -r {x} -H {x} --out {out}", True),
]


def _run(command: str, out, missing, capsys) -> str:
    argv = command.format(out=out, x=missing).split()
    status = main(argv)
    captured = capsys.readouterr()
    assert status == 2, (argv, captured.out, captured.err)
    assert "Traceback" not in captured.err
    return captured.err


@pytest.fixture
def read_only_dir(tmp_path):
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    yield folder
    folder.chmod(0o755)


@pytest.mark.parametrize("command, is_file", COMMANDS, ids=[c.split(" {")[0] for c, _ in COMMANDS])
def test_output_under_a_file_is_refused_before_any_work(command, is_file, tmp_path, capsys):
    blocker = tmp_path / "some_file"
    blocker.write_text("not a directory")
    out = blocker / ("out.txt" if is_file else "out")
    err = _run(command, out, tmp_path / "missing", capsys)
    assert f"error: {out}: cannot " in err and f"{blocker} is a file, not a directory" in err, err
    assert blocker.read_text() == "not a directory"


@pytest.mark.skipif(ROOT, reason="root ignores permissions (the under-a-file test covers root)")
@pytest.mark.parametrize("command, is_file", COMMANDS, ids=[c.split(" {")[0] for c, _ in COMMANDS])
def test_output_in_a_read_only_dir_is_refused_before_any_work(command, is_file, read_only_dir, tmp_path, capsys):
    out = read_only_dir / ("out.txt" if is_file else "out")
    err = _run(command, out, tmp_path / "missing", capsys)
    assert f"error: {out}: cannot write the output here: Permission denied" in err, err
    assert list(read_only_dir.iterdir()) == []  # nothing half-written


def test_every_writing_command_is_listed():
    """A new command that takes an output option must be added to COMMANDS (and check its output)."""
    import typer.main

    from audiossl.cli.main import app

    group = typer.main.get_group(app)
    output_names = {"out", "out_dir", "dest"}
    found = set()

    def walk(command, prefix: list[str]) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*prefix, name])
        if not hasattr(command, "commands") and any(p.name in output_names for p in command.params):
            found.add(" ".join(prefix))

    walk(group, [])
    assert len(found) > 30  # the walk does see the commands (plugins included)
    missing = {name for name in found if not any(command.startswith(f"{name} ") for command, _ in COMMANDS)}
    assert missing == set()


def test_helpers_name_the_path_and_leave_nothing_behind(tmp_path):
    target = tmp_path / "a" / "b"
    assert ensure_writable_dir(target) == target and not (tmp_path / "a").exists()
    assert ensure_writable_dir(target, create=True).is_dir() and list(target.iterdir()) == []
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    with pytest.raises(UserError, match="must be a directory"):
        ensure_writable_dir(afile)
    with pytest.raises(UserError, match="must be a file"):
        ensure_writable_file(tmp_path)
    with pytest.raises(UserError, match="file exists"):
        ensure_writable_file(afile, replace=False)
    assert ensure_writable_file(afile) == afile and afile.read_text() == "x"


def test_existing_outputs_are_said_to_be_replaced(tmp_path, caplog):
    import logging

    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "text").write_text("utt1 an old transcript\n")
    with caplog.at_level(logging.WARNING, logger="audiossl"):
        ensure_writable_dir(taken, warn_existing=True)
        ensure_writable_dir(tmp_path / "fresh", warn_existing=True)
        ensure_writable_file(taken / "text")
    messages = [record.getMessage() for record in caplog.records]
    assert any(f"{taken} already holds files" in m for m in messages)
    assert any(f"{taken / 'text'} exists and will be replaced" in m for m in messages)
    assert not any("fresh" in m for m in messages)


def test_data_commands_say_when_they_write_into_an_existing_dir(tmp_path, caplog, capsys):
    import logging

    out = tmp_path / "synth"
    assert main(["data", "synth", str(out), "--speakers", "2", "--utts-per-speaker", "1"]) == 0
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="audiossl"):
        assert main(["data", "synth", str(out), "--speakers", "2", "--utts-per-speaker", "1"]) == 0
    assert f"{out} already holds files" in caplog.text
