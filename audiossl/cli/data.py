"""``audiossl data``: create, check and repair Kaldi-style data directories."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Create, check and repair Kaldi-style data directories.", no_args_is_help=True)


@app.command()
def synth(
    out_dir: Annotated[Path, typer.Argument(help="Directory to write the data dir (and its wav/ folder) into.")],
    speakers: Annotated[int, typer.Option(help="Number of synthetic speakers.")] = 8,
    utts_per_speaker: Annotated[int, typer.Option(help="Utterances per speaker.")] = 24,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same corpus.")] = 0,
    sample_rate: Annotated[int, typer.Option(help="Sample rate of the generated audio (Hz).")] = 16000,
) -> None:
    """Generate the embedded synthetic corpus (speech-like audio with text, speaker and emotion labels)."""
    from audiossl.data.synth import SynthConfig, synthesize_corpus

    config = SynthConfig(speakers=speakers, utts_per_speaker=utts_per_speaker, seed=seed, sample_rate=sample_rate)
    data = synthesize_corpus(out_dir, config)
    typer.echo(f"wrote {len(data.utterance_ids)} utterances from {len(data.spk2utt)} speakers to {out_dir}")


@app.command()
def validate(
    data_dir: Annotated[Path, typer.Argument(help="Kaldi-style data directory to check.")],
    no_audio: Annotated[bool, typer.Option("--no-audio", help="Check the tables only, do not read audio.")] = False,
    no_pipes: Annotated[
        bool, typer.Option("--no-pipes", help="Refuse wav.scp pipe commands ('cmd |') instead of running them.")
    ] = False,
) -> None:
    """Check a data dir: sort order, id consistency, readable audio, sample rates. Exit 2 on any problem."""
    from audiossl.data.validate import validate_data_dir

    problems = validate_data_dir(data_dir, check_audio=not no_audio, allow_pipes=not no_pipes)
    for problem in problems:
        typer.echo(str(problem), err=True)
    if problems:
        typer.echo(f"{data_dir}: {len(problems)} problem(s)", err=True)
        raise typer.Exit(2)
    typer.echo(f"{data_dir}: OK")


@app.command()
def fix(
    data_dir: Annotated[Path, typer.Argument(help="Kaldi-style data directory to repair in place.")],
    no_pipes: Annotated[
        bool, typer.Option("--no-pipes", help="Refuse wav.scp pipe commands ('cmd |') instead of running them.")
    ] = False,
) -> None:
    """Sort every table, regenerate spk2utt and utt2dur; report (never delete) inconsistent utterances."""
    from audiossl.data.validate import fix_data_dir

    changes = fix_data_dir(data_dir, allow_pipes=not no_pipes)
    for change in changes:
        typer.echo(change)
    if not changes:
        typer.echo(f"{data_dir}: nothing to fix")


@app.command("prepare-fsdd")
def prepare_fsdd(
    recordings: Annotated[Path, typer.Argument(help="Folder of FSDD wav files ({digit}_{speaker}_{take}.wav).")],
    out_dir: Annotated[Path, typer.Argument(help="Where to write the train/ and test/ data dirs.")],
) -> None:
    """Turn FSDD recordings into train/test Kaldi data dirs (official split: takes 0-4 are test)."""
    from audiossl.data.fsdd import prepare_fsdd as prepare

    for split, data in prepare(recordings, out_dir).items():
        typer.echo(f"{split}: {len(data.utterance_ids)} utterances -> {out_dir / split}")


@app.command()
def split(
    data_dir: Annotated[Path, typer.Argument(help="Kaldi data dir to split.")],
    out_dir: Annotated[Path, typer.Argument(help="Parent folder of the parts (OUT/<name>).")],
    parts: Annotated[
        str, typer.Option(help="Part names and fractions, e.g. train=0.8,test=0.2.")
    ] = "train=0.8,test=0.2",
    by: Annotated[
        str, typer.Option(help="speaker: each speaker in one part (unseen-speaker tests); utterance: per speaker.")
    ] = "utterance",
    seed: Annotated[int, typer.Option(help="Seed of the assignment.")] = 0,
) -> None:
    """Split a data dir into parts by utterance (stratified per speaker) or by speaker."""
    from audiossl.data.kaldi import DataDir
    from audiossl.data.subset import parse_fractions, write_parts
    from audiossl.data.subset import split as split_data

    written = write_parts(split_data(DataDir.load(data_dir), parse_fractions(parts), by=by, seed=seed), out_dir)
    for name, path in written.items():
        data = DataDir.load(path)
        typer.echo(
            f"{name}: {len(data.utterance_ids)} utterances, {len(set(data.utt2spk.values()))} speakers -> {path}"
        )


@app.command()
def subset(
    data_dir: Annotated[Path, typer.Argument(help="Kaldi data dir to take utterances from.")],
    out_dir: Annotated[Path, typer.Argument(help="Data dir to write.")],
    utts_per_speaker: Annotated[int, typer.Option(help="Utterances kept per speaker (Kaldi order).")] = 2,
    max_speakers: Annotated[int | None, typer.Option(help="Keep at most this many speakers.")] = None,
) -> None:
    """Keep the first few utterances of each speaker (smoke runs, quick checks)."""
    from audiossl.data.kaldi import DataDir
    from audiossl.data.subset import smoke_subset

    data = smoke_subset(DataDir.load(data_dir), utts_per_speaker, max_speakers).save(out_dir)
    typer.echo(f"{len(DataDir.load(data).utterance_ids)} utterances -> {out_dir}")
