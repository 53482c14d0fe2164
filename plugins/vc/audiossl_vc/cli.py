"""``audiossl vc train-vocoder | convert | evaluate``: thin commands over :mod:`audiossl_vc`.

Heavy imports happen inside the commands, so mounting the plugin at every ``audiossl`` start-up
stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from audiossl.fileio import ensure_writable_dir, ensure_writable_file

app = typer.Typer(
    help="Voice conversion by kNN matching of SSL features (kNN-VC), with HiFi-GAN, mel + Griffin-Lim or NeuCoSVC "
    "(singing: source pitch and loudness) vocoders.",
    no_args_is_help=True,
)

ModelOption = Annotated[Path, typer.Option("--model", help="Pretrained audiossl checkpoint or run dir (the encoder).")]
VocoderOption = Annotated[Path, typer.Option("--vocoder", help="Vocoder run dir (or checkpoint) from train-vocoder.")]
KOption = Annotated[int, typer.Option("--k", help="Target frames averaged per source frame.")]
MinSecondsOption = Annotated[
    float, typer.Option("--min-seconds", help="Refuse a target pool with less speech than this (seconds).")
]


@app.command("train-vocoder")
def train_vocoder_command(
    model: ModelOption,
    data: Annotated[list[Path], typer.Option("--data", help="Kaldi data dir of training audio; repeat for several.")],
    out: Annotated[Path, typer.Option("--out", help="Run dir to write (checkpoints, train.jsonl, loss.png).")],
    kind: Annotated[
        str,
        typer.Option(
            help="hifigan (GAN vocoder), mel-gl (mel regressor + Griffin-Lim) or neucosvc (NeuCoSVC synthesizer: "
            "renders the source's F0 and loudness, for singing)."
        ),
    ] = "mel-gl",
    layer: Annotated[
        str, typer.Option(help="Encoder layer: index (negative from the end), 'i,j' (their mean) or 'mix' (learned).")
    ] = "-1",
    preset: Annotated[
        str, typer.Option(help="Network size: hifigan tiny, small or v1; neucosvc tiny (CPU) or base (GPU).")
    ] = "tiny",
    steps: Annotated[int, typer.Option(help="Optimiser steps in all.")] = 300,
    batch_size: Annotated[int, typer.Option(help="Segments per step.")] = 8,
    segment_frames: Annotated[int, typer.Option(help="Feature frames per training segment.")] = 24,
    lr: Annotated[float | None, typer.Option(help="Learning rate [default: 2e-4 hifigan, 1e-3 mel-gl].")] = None,
    prematch_k: Annotated[
        int, typer.Option(help="Train on k-NN matched features of the same speaker (kNN-VC's prematching); 0 = off.")
    ] = 0,
    max_utterances: Annotated[int | None, typer.Option(help="Use at most this many utterances per data dir.")] = None,
    checkpoint_every: Annotated[int, typer.Option(help="Steps between checkpoints.")] = 100,
    seed: Annotated[int, typer.Option(help="Seed of the weights and the segment draws.")] = 0,
    device: Annotated[str, typer.Option(help="Where the vocoder trains: cpu or cuda.")] = "cpu",
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out from its newest checkpoint.")
    ] = False,
) -> None:
    """Train a vocoder from the frozen features of --model to waveforms."""
    ensure_writable_dir(out)
    # lazy: audiossl_vc.train pulls in torch; every `audiossl` start-up imports this module
    from audiossl_vc.train import VocoderTrainConfig, train_vocoder

    config = VocoderTrainConfig(
        kind=kind, layer=layer, preset=preset, steps=steps, batch_size=batch_size, segment_frames=segment_frames,
        lr=lr, prematch_k=prematch_k, max_utterances=max_utterances, checkpoint_every=checkpoint_every, seed=seed,
        device=device,
    )  # fmt: skip
    result = train_vocoder(model, data, out, config, resume=resume)
    typer.echo(f"step {result.step}: loss {result.last_loss:.4f}")
    typer.echo(f"wrote {result.checkpoint}")


@app.command()
def convert(
    source: Annotated[Path, typer.Argument(help="Audio file to convert.")],
    target: Annotated[
        list[Path], typer.Option("--target", help="Target voice: a dir of audio files, a data dir, or files (repeat).")
    ],
    model: ModelOption,
    vocoder: VocoderOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="WAV file to write (at the encoder's rate).")],
    k: KOption = 4,
    layer: Annotated[
        str | None, typer.Option(help="Check that the vocoder renders this layer spec [default: the vocoder's].")
    ] = None,
    target_speaker: Annotated[
        str | None, typer.Option(help="With a data dir as --target: the speaker (utt2spk) to take.")
    ] = None,
    min_seconds: MinSecondsOption = 5.0,
    plot: Annotated[Path | None, typer.Option(help="Also write source and converted spectrograms to this PNG.")] = None,
    key_shift: Annotated[
        str | None,
        typer.Option(
            help="neucosvc only: semitones added to the source F0, or 'auto' (the target's median register, "
            "whole semitones) [default: auto]."
        ),
    ] = None,
) -> None:
    """Speak (or sing) SOURCE in the target's voice: kNN matching against the target pool, then the vocoder.

    With a neucosvc vocoder the output keeps the source's melody (key-shifted) and loudness.
    """
    ensure_writable_file(out)
    if plot is not None:
        ensure_writable_file(plot)
    if key_shift is not None and key_shift.strip().lower() != "auto":
        from audiossl_vc.pitch import check_key_shift  # lazy: fail before loading models

        try:
            check_key_shift(float(key_shift))
        except ValueError:
            from audiossl.errors import ConfigError

            raise ConfigError(f"--key-shift must be 'auto' or a number of semitones, got {key_shift!r}") from None
    # lazy: audiossl_vc.convert pulls in torch; every `audiossl` start-up imports this module
    from audiossl_vc.convert import convert_file

    chosen = target[0] if len(target) == 1 else target
    rendered = convert_file(
        source, chosen, model, vocoder, out, k=k, layer=layer, target_speaker=target_speaker,
        min_seconds=min_seconds, plot=plot, key_shift=key_shift,
    )  # fmt: skip
    if rendered.pitch is not None:
        typer.echo(f"key shift {rendered.key_shift:+g} semitones")
    typer.echo(f"wrote {out}")
    if plot is not None:
        typer.echo(f"wrote {plot}")


@app.command()
def evaluate(
    model: ModelOption,
    vocoder: Annotated[
        list[Path],
        typer.Option("--vocoder", help="Vocoder run dir from train-vocoder; repeat to compare several side by side."),
    ],
    data: Annotated[Path, typer.Option("--data", help="Kaldi data dir with utt2spk (and text for WER/CER).")],
    out: Annotated[Path, typer.Option("--out", help="Dir for converted audio, data dirs and metrics.json.")],
    pairs: Annotated[int, typer.Option(help="Random cross-speaker pairs to convert.")] = 8,
    k: KOption = 4,
    seed: Annotated[int, typer.Option(help="Seed of the pairs and of the pool/reference split.")] = 0,
    min_seconds: MinSecondsOption = 5.0,
    pool_data: Annotated[
        Path | None, typer.Option(help="Data dir to take target pools from (e.g. the training split of the speakers).")
    ] = None,
    source_data: Annotated[
        Path | None,
        typer.Option(help="Data dir to take sources from (e.g. speech to convert to the singers of --data)."),
    ] = None,
    key_shift: Annotated[
        str,
        typer.Option(help="Key shift of neucosvc and of every pitch reference: 'auto' (target register) or semitones."),
    ] = "auto",
    sv_run: Annotated[Path | None, typer.Option(help="Trained sv run for speaker embeddings.")] = None,
    asr_run: Annotated[Path | None, typer.Option(help="Trained asr run for the content WER/CER.")] = None,
) -> None:
    """Target-speaker similarity, pitch accuracy (F0 RMSE, VDE) and ASR WER/CER of conversions between speakers.

    With several --vocoder runs the same pairs go through each; comparison.md puts them side by side.
    """
    ensure_writable_dir(out)
    # lazy: audiossl_vc.evaluate pulls in torch; every `audiossl` start-up imports this module
    from audiossl_vc.evaluate import compare_vocoders, evaluate_conversions

    options = dict(
        pairs=pairs, k=k, seed=seed, min_seconds=min_seconds, sv_run=sv_run, asr_run=asr_run, pool_data=pool_data,
        source_data=source_data, key_shift=key_shift,
    )  # fmt: skip
    if len(vocoder) == 1:
        report = evaluate_conversions(model, vocoder[0], data, out, **options)
        typer.echo(report.to_text(), nl=False)
        typer.echo(f"wrote {out / 'metrics.json'}")
        return
    reports = compare_vocoders(model, vocoder, data, out, **options)
    for label, report in reports.items():
        typer.echo(f"== {label}")
        typer.echo(report.to_text(), nl=False)
    typer.echo((out / "comparison.md").read_text(), nl=False)
    typer.echo(f"wrote {out / 'comparison.md'}")
