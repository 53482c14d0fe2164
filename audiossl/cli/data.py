"""``audiossl data``: create, check and repair Kaldi-style data directories."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from audiossl.fileio import ensure_writable_dir

app = typer.Typer(help="Create, check and repair Kaldi-style data directories.", no_args_is_help=True)


@app.command()
def synth(
    out_dir: Annotated[Path, typer.Argument(help="Directory to write the data dir (and its wav/ folder) into.")],
    speakers: Annotated[int, typer.Option(help="Number of synthetic speakers.")] = 8,
    utts_per_speaker: Annotated[int, typer.Option(help="Utterances per speaker.")] = 24,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same corpus.")] = 0,
    sample_rate: Annotated[int, typer.Option(help="Sample rate of the generated audio (Hz).")] = 16000,
    singing: Annotated[
        bool, typer.Option("--singing", help="Sing instead: melodies with a utt2f0 reference (speakers = singers).")
    ] = False,
    words_per_utt: Annotated[
        tuple[int, int],
        typer.Option(help="MIN MAX lexicon words per utterance (1 1: one keyword per clip, as Speech Commands)."),
    ] = (1, 5),
) -> None:
    """Generate the embedded synthetic corpus (speech-like audio; text, speaker, emotion, intent, phones, alignment)."""
    ensure_writable_dir(out_dir, warn_existing=True)
    if singing:  # lazy: audiossl.data.singing pulls in scipy (the singing corpus, issue 17)
        from audiossl.data.singing import SingingConfig, synthesize_singing

        sung = SingingConfig(singers=speakers, songs_per_singer=utts_per_speaker, seed=seed, sample_rate=sample_rate)
        data = synthesize_singing(out_dir, sung)
        typer.echo(f"wrote {len(data.utterance_ids)} sung utterances from {len(data.spk2utt)} singers to {out_dir}")
        return
    # lazy: data.synth pulls in scipy; every `audiossl` start-up imports this module
    from audiossl.data.synth import SynthConfig, synthesize_corpus

    config = SynthConfig(
        speakers=speakers,
        utts_per_speaker=utts_per_speaker,
        seed=seed,
        sample_rate=sample_rate,
        words_per_utt=tuple(words_per_utt),
    )
    data = synthesize_corpus(out_dir, config)
    typer.echo(f"wrote {len(data.utterance_ids)} utterances from {len(data.spk2utt)} speakers to {out_dir}")


@app.command()
def validate(
    data_dir: Annotated[Path, typer.Argument(help="Kaldi-style data directory to check.")],
    no_audio: Annotated[bool, typer.Option("--no-audio", help="Check the tables only, do not read audio.")] = False,
    no_pipes: Annotated[
        bool,
        typer.Option(
            "--no-pipes",
            help="Refuse wav.scp pipe commands ('cmd |') even when the global --allow-pipes or "
            "AUDIOSSL_ALLOW_PIPES=1 allows them (refusing is the default).",
        ),
    ] = False,
    nj: Annotated[int, typer.Option("--nj", min=1, help="Local worker processes reading the audio.")] = 1,
    shard: Annotated[
        str | None,
        typer.Option(help="I/N: read shard I of N of the recordings only and save what was found to --facts."),
    ] = None,
    facts: Annotated[
        Path | None,
        typer.Option(
            help="With --shard: where the shard's audio facts go (F.json -> F.shard-I-of-N.json). Without --shard: "
            "report on the shards' facts of F.json instead of reading the audio (the problems an unsharded run finds)."
        ),
    ] = None,
    sample_rate: Annotated[
        int | None,
        typer.Option(
            "--sample-rate",
            min=1,
            help="The rate (Hz) the data will be used at: audiossl resamples every recording to it when reading, so "
            "mixed or other rates are not problems; what gets resampled is listed (upsampling as a warning). "
            "Without it, every recording must have the same rate.",
        ),
    ] = None,
) -> None:
    """Check a data dir: sort order, id consistency, readable audio, sample rates. Exit 2 on any problem."""
    # lazy: data.validate pulls in torch; every `audiossl` start-up imports this module
    from audiossl.data.validate import validate_data_dir

    allow = False if no_pipes else None
    if shard is not None:
        from audiossl.data.shards import Shard, part_path
        from audiossl.data.validate import read_audio_facts, save_audio_facts
        from audiossl.errors import ConfigError

        if facts is None:
            raise ConfigError("--shard needs --facts F.json: where the shard's audio facts are saved")
        path = part_path(facts, Shard.parse(shard))
        save_audio_facts(read_audio_facts(data_dir, allow_pipes=allow, shard=shard, num_jobs=nj), path)
        typer.echo(f"wrote {path}; when every shard is done: audiossl data validate {data_dir} --facts {facts}")
        return
    merged = None
    if facts is not None:
        from audiossl.data.shards import find_parts
        from audiossl.data.validate import merge_audio_facts

        merged = merge_audio_facts(find_parts(facts))
    notes: list = []
    problems = validate_data_dir(
        data_dir,
        check_audio=not no_audio,
        allow_pipes=allow,
        num_jobs=nj,
        audio_facts=merged,
        resample_to=sample_rate,
        notes=notes,
    )
    for note in notes:
        typer.echo(f"note: {note}", err=True)
    for problem in problems:
        typer.echo(str(problem), err=True)
    if problems:
        if any("mixed sample rates" in problem.message for problem in problems):
            typer.echo(
                "hint: audiossl resamples when it reads; if the data will be used at one rate, check with "
                "--sample-rate R (e.g. --sample-rate 16000)",
                err=True,
            )
        typer.echo(f"{data_dir}: {len(problems)} problem(s)", err=True)
        raise typer.Exit(2)
    rate = f" (at {sample_rate} Hz)" if sample_rate is not None else ""
    typer.echo(f"{data_dir}: OK{rate}")


@app.command()
def fix(
    data_dir: Annotated[Path, typer.Argument(help="Kaldi-style data directory to repair in place.")],
    no_pipes: Annotated[
        bool,
        typer.Option(
            "--no-pipes",
            help="Refuse wav.scp pipe commands ('cmd |') even when the global --allow-pipes or "
            "AUDIOSSL_ALLOW_PIPES=1 allows them (refusing is the default).",
        ),
    ] = False,
) -> None:
    """Sort every table, regenerate spk2utt and utt2dur; report (never delete) inconsistent utterances."""
    ensure_writable_dir(data_dir)
    # lazy: data.validate pulls in torch; every `audiossl` start-up imports this module
    from audiossl.data.validate import fix_data_dir

    changes = fix_data_dir(data_dir, allow_pipes=False if no_pipes else None)
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
    ensure_writable_dir(out_dir, warn_existing=True)
    # lazy: the corpus modules pull in numpy and soundfile; every `audiossl` start-up imports this module
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
    ensure_writable_dir(out_dir, warn_existing=True)
    # lazy: data modules cost ~10 ms to import; every `audiossl` start-up imports this module
    from audiossl.data.kaldi import DataDir
    from audiossl.data.subset import parse_fractions, write_parts
    from audiossl.data.subset import split as split_data
    from audiossl.data.translation import carry_translations

    written = write_parts(split_data(DataDir.load(data_dir), parse_fractions(parts), by=by, seed=seed), out_dir)
    carry_translations(data_dir, list(written.values()))  # text.<lang> tables follow their utterances
    for name, path in written.items():
        data = DataDir.load(path)
        typer.echo(
            f"{name}: {len(data.utterance_ids)} utterances, {len(set(data.utt2spk.values()))} speakers -> {path}"
        )


@app.command()
def subset(
    data_dir: Annotated[Path, typer.Argument(help="Kaldi data dir to take utterances from.")],
    out_dir: Annotated[Path, typer.Argument(help="Data dir to write.")],
    utts_per_speaker: Annotated[int, typer.Option(help="Utterances kept per speaker (evenly spaced).")] = 2,
    max_speakers: Annotated[int | None, typer.Option(help="Keep at most this many speakers.")] = None,
) -> None:
    """Keep a few utterances of each speaker, spread over its list (smoke runs, quick checks)."""
    ensure_writable_dir(out_dir, warn_existing=True)
    # lazy: data modules cost ~10 ms to import; every `audiossl` start-up imports this module
    from audiossl.data.kaldi import DataDir
    from audiossl.data.subset import smoke_subset
    from audiossl.data.translation import carry_translations

    data = smoke_subset(DataDir.load(data_dir), utts_per_speaker, max_speakers).save(out_dir)
    carry_translations(data_dir, [out_dir])  # text.<lang> tables follow their utterances
    typer.echo(f"{len(DataDir.load(data).utterance_ids)} utterances -> {out_dir}")


@app.command()
def folds(
    data_dir: Annotated[Path, typer.Argument(help="Kaldi data dir with an utt2<label> table.")],
    out_dir: Annotated[Path, typer.Argument(help="Parent of the folds: OUT/<value>/train and OUT/<value>/test.")],
    by: Annotated[str, typer.Option(help="Label whose values are the held-out groups (utt2<by>).")] = "session",
) -> None:
    """Leave-one-group-out folds by a label (IEMOCAP: one session held out per fold)."""
    ensure_writable_dir(out_dir, warn_existing=True)
    # lazy: data modules cost ~10 ms to import; every `audiossl` start-up imports this module
    from audiossl.data.folds import write_group_folds

    for fold in write_group_folds(data_dir, out_dir, by):
        typer.echo(str(fold))


@app.command()
def download(
    corpus: Annotated[str, typer.Argument(help="librispeech, vctk or fsdd (the public corpora).")],
    dest: Annotated[Path, typer.Argument(help="Folder to download and extract into.")],
    parts: Annotated[
        str | None, typer.Option(help="Comma-separated parts (librispeech: dev-clean,train-clean-100,...).")
    ] = None,
    mirror: Annotated[
        str | None, typer.Option(help="Folder URL to fetch from instead (a mirror, file:///...).")
    ] = None,
) -> None:
    """Download (resumable, checked) and extract a public corpus; parts already extracted are skipped."""
    ensure_writable_dir(dest)
    # lazy: the downloader pulls in ssl/http/tarfile; every `audiossl` start-up imports this module
    from audiossl.data.corpora.download import download_corpus

    chosen = [p.strip() for p in parts.split(",") if p.strip()] if parts else None
    download_corpus(corpus, dest, chosen, mirror=mirror, echo=typer.echo)
    typer.echo(f"{corpus}: ready in {dest}")


@app.command("prepare-librispeech")
def prepare_librispeech(
    corpus_dir: Annotated[Path, typer.Argument(help="The LibriSpeech folder (or the folder it was extracted in).")],
    out_dir: Annotated[Path, typer.Argument(help="Parent of the data dirs (OUT/train_clean_100, ...).")],
    parts: Annotated[str | None, typer.Option(help="Comma-separated parts; default: every part present.")] = None,
) -> None:
    """LibriSpeech -> one data dir per part (text, utt2spk, utt2dur)."""
    ensure_writable_dir(out_dir, warn_existing=True)
    # lazy: the corpus modules pull in numpy and soundfile; every `audiossl` start-up imports this module
    from audiossl.data.corpora.librispeech import data_dir_name
    from audiossl.data.corpora.librispeech import prepare_librispeech as prepare

    chosen = [p.strip() for p in parts.split(",") if p.strip()] if parts else None
    for part, data in prepare(corpus_dir, out_dir, chosen).items():
        typer.echo(f"{part}: {len(data.utterance_ids)} utterances -> {out_dir / data_dir_name(part)}")


@app.command("prepare-voxceleb")
def prepare_voxceleb(
    corpus_dirs: Annotated[
        list[Path], typer.Argument(help="VoxCeleb release folder(s) holding wav/idNNNNN/... or dev/aac/idNNNNN/...")
    ],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Parent of the data dirs: OUT/dev (and OUT/test).")],
    trials: Annotated[
        Path | None, typer.Option(help="Official trial list (veri_test2.txt): its speakers form OUT/test.")
    ] = None,
) -> None:
    """VoxCeleb1/2 -> OUT/dev (and OUT/test with OUT/test/trials in 'label enroll test' utterance ids)."""
    ensure_writable_dir(out_dir, warn_existing=True)
    # lazy: the corpus modules pull in numpy and soundfile; every `audiossl` start-up imports this module
    from audiossl.data.corpora.voxceleb import prepare_voxceleb as prepare

    for name, data in prepare(corpus_dirs, out_dir, trials).items():
        speakers = len(set(data.utt2spk.values()))
        typer.echo(f"{name}: {len(data.utterance_ids)} utterances, {speakers} speakers -> {out_dir / name}")
    if trials is not None:
        typer.echo(f"trials -> {out_dir / 'test' / 'trials'}")


@app.command("prepare-iemocap")
def prepare_iemocap(
    corpus_dir: Annotated[Path, typer.Argument(help="IEMOCAP_full_release (with Session1 ... Session5).")],
    out_dir: Annotated[Path, typer.Argument(help="Data dir to write (utt2emo, utt2session, text).")],
    all_classes: Annotated[
        bool, typer.Option("--all-classes", help="Keep every label, not the 4-class neu/hap+exc/ang/sad setup.")
    ] = False,
) -> None:
    """IEMOCAP -> a data dir with utt2emo (4 classes by default) and utt2session for session folds."""
    ensure_writable_dir(out_dir, warn_existing=True)
    from collections import Counter

    # lazy: the corpus modules pull in numpy and soundfile; every `audiossl` start-up imports this module
    from audiossl.data.corpora.iemocap import prepare_iemocap as prepare

    data = prepare(corpus_dir, out_dir, four_class=not all_classes)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(Counter(data.labels["emo"].values()).items()))
    typer.echo(f"{len(data.utterance_ids)} utterances ({counts}) -> {out_dir}")


@app.command("prepare-vctk")
def prepare_vctk(
    corpus_dir: Annotated[Path, typer.Argument(help="VCTK 0.92 folder (with wav48_silence_trimmed/ and txt/).")],
    out_dir: Annotated[Path, typer.Argument(help="Data dir to write.")],
    mic: Annotated[str, typer.Option(help="Microphone to keep: mic1 or mic2.")] = "mic1",
    keep_untranscribed: Annotated[
        bool, typer.Option("--keep-untranscribed", help="Keep recordings without a transcript (then no text).")
    ] = False,
) -> None:
    """VCTK 0.92 -> one data dir (one microphone; recordings without a transcript left out)."""
    ensure_writable_dir(out_dir, warn_existing=True)
    # lazy: the corpus modules pull in numpy and soundfile; every `audiossl` start-up imports this module
    from audiossl.data.corpora.vctk import prepare_vctk as prepare

    data, without_text = prepare(corpus_dir, out_dir, mic=mic, require_text=not keep_untranscribed)
    speakers = len(set(data.utt2spk.values()))
    left = f"; {without_text} without a transcript left out" if without_text and not keep_untranscribed else ""
    typer.echo(f"{len(data.utterance_ids)} utterances, {speakers} speakers -> {out_dir}{left}")


@app.command()
def combine(
    out_dir: Annotated[Path, typer.Argument(help="Data dir to write.")],
    data_dirs: Annotated[list[Path], typer.Argument(help="Data dirs to combine (disjoint utterance ids).")],
) -> None:
    """Combine data dirs into one (tables every dir has; e.g. LibriSpeech's 960 h from its parts)."""
    ensure_writable_dir(out_dir, warn_existing=True)
    # lazy: data modules cost ~10 ms to import; every `audiossl` start-up imports this module
    from audiossl.data.combine import combine as combine_dirs

    data = combine_dirs(data_dirs)
    data.save(out_dir)
    typer.echo(f"{len(data.utterance_ids)} utterances from {len(data_dirs)} dir(s) -> {out_dir}")


from audiossl.cli.data_shar import register_export_shar  # noqa: E402  (issue 14, H1)

register_export_shar(app)

from audiossl.cli.data_filter import register_filter  # noqa: E402  (issue 21, H3)

register_filter(app)
