"""``audiossl tts train | synthesize | evaluate | train-vocoder``: text-to-speech with SpeechT5's decoder.

Heavy imports happen inside the commands: audiossl mounts this app at every start-up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from audiossl.cli import plugins as plugin_cli
from audiossl.fileio import ensure_writable_dir, ensure_writable_file, removed_if_failed

app = typer.Typer(
    help="Text-to-speech: text -> log-mel (SpeechT5 encoder-decoder + post-net) -> waveform (vc plugin's vocoders).",
    no_args_is_help=True,
)

VocoderOption = Annotated[
    Path | None,
    typer.Option(help="A vocoder run of `audiossl tts train-vocoder` (HiFi-GAN / mel-gl); default: Griffin-Lim."),
]


@app.command()
def train(
    data: Annotated[Path, typer.Argument(help="Data dir with wav.scp, text and utt2spk.")],
    out: plugin_cli.OutOption,
    init: Annotated[
        Path | None, typer.Option(help="speecht5 pretraining run or checkpoint to start from (else random weights).")
    ] = None,
    encoder_preset: Annotated[str, typer.Option(help="Encoder preset without --init: tiny or base.")] = "tiny",
    encoder_layers: Annotated[int | None, typer.Option(help="Override the preset's encoder blocks.")] = None,
    dim: Annotated[int | None, typer.Option(help="Override the preset's width.")] = None,
    decoder_layers: Annotated[int, typer.Option(help="Decoder blocks without --init.")] = 3,
    reduction: Annotated[int, typer.Option(help="Mel frames per decoder step without --init.")] = 2,
    max_frames: Annotated[int, typer.Option(help="Longest utterance in 10 ms mel frames.")] = 1000,
    max_steps: Annotated[int, typer.Option(help="Optimizer steps.")] = 2000,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 1e-3,
    warmup_steps: Annotated[int, typer.Option(help="Linear warm-up steps.")] = 100,
    batch_seconds: Annotated[float, typer.Option(help="Padded seconds of audio per batch.")] = 60.0,
    seed: Annotated[int, typer.Option(help="Seed of weights, batches and dropout.")] = 0,
    device: plugin_cli.DeviceOption = None,
    log_every: Annotated[int, typer.Option(help="Steps between log records.")] = 10,
    checkpoint_every: Annotated[int, typer.Option(help="Steps between checkpoints.")] = 500,
    resume: plugin_cli.ResumeOption = False,
) -> None:
    """Train a TTS model on DATA (text, speakers, audio); the run goes to --out."""
    ensure_writable_dir(out)
    from audiossl.fileio import latest_checkpoint
    from audiossl_speecht5.tts import TTSConfig, train_tts

    config = TTSConfig(
        init=None if init is None else str(init),
        encoder_preset=encoder_preset,
        encoder_layers=encoder_layers,
        dim=dim,
        decoder_layers=decoder_layers,
        reduction=reduction,
        max_frames=max_frames,
        max_steps=max_steps,
        lr=lr,
        warmup_steps=warmup_steps,
        batch_seconds=batch_seconds,
        seed=seed,
        device=device or "auto",
        log_every=log_every,
        checkpoint_every=checkpoint_every,
    )
    with removed_if_failed(out, started=lambda path: (path / "train.jsonl").exists() or latest_checkpoint(path)):
        checkpoint = train_tts(data, out, config, resume=resume)
    typer.echo(f"finished: {checkpoint}")


@app.command()
def synthesize(
    run_dir: Annotated[Path, typer.Argument(help="TTS run dir (from `tts train`).")],
    text: Annotated[str, typer.Argument(help="The sentence to speak.")],
    speaker: Annotated[str, typer.Option(help="Speaker name (one of the run's training speakers).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output wav file.")],
    vocoder: VocoderOption = None,
    max_frames: Annotated[int | None, typer.Option(help="Stop after this many 10 ms frames.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the pre-net dropout (on at inference).")] = 0,
    save_mel: Annotated[bool, typer.Option(help="Also write the log-mel as OUT.npy (F, n_mels).")] = False,
) -> None:
    """Speak TEXT in the voice of --speaker into a wav file."""
    ensure_writable_file(out)
    import numpy as np
    import soundfile as sf
    import torch

    from audiossl.fileio import atomic_path
    from audiossl_speecht5.speech import Vocoder
    from audiossl_speecht5.tts import load_tts, synthesize_mels

    description, model = load_tts(run_dir)
    torch.manual_seed(seed)
    mel = synthesize_mels(model, description, [text], [speaker], max_frames=max_frames, run_dir=run_dir)[0]
    wave = Vocoder(model.backbone.config.mel, vocoder)(mel).numpy()
    with atomic_path(out) as tmp:
        sf.write(tmp, np.clip(wave, -1, 1), model.backbone.config.mel.sample_rate, subtype="PCM_16", format="WAV")
    if save_mel:
        with atomic_path(out.with_suffix(".npy")) as tmp:
            np.save(tmp, mel.numpy())
    typer.echo(f"wrote {out} ({mel.shape[0]} frames, {len(wave) / model.backbone.config.mel.sample_rate:.2f} s)")


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="TTS run dir.")],
    data: Annotated[Path, typer.Argument(help="Data dir whose sentences and speakers are synthesised.")],
    out: plugin_cli.OutOption,
    vocoder: VocoderOption = None,
    asr: Annotated[Path | None, typer.Option(help="ASR run (audiossl asr train) for WER/CER of the speech.")] = None,
    sv: Annotated[
        Path | None, typer.Option(help="Speaker-verification run (audiossl sv train) for similarity.")
    ] = None,
    max_frames: Annotated[int | None, typer.Option(help="Stop synthesis after this many frames.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the pre-net dropout.")] = 0,
) -> None:
    """Synthesise DATA's sentences, resynthesise its recordings; MCD, CER (--asr), speaker similarity (--sv)."""
    ensure_writable_dir(out)
    from audiossl_speecht5.tts_eval import evaluate_tts

    metrics = evaluate_tts(
        run_dir, data, out, vocoder=vocoder, asr_run=asr, sv_run=sv, max_frames=max_frames, seed=seed
    )
    for name, value in metrics.items():
        typer.echo(f"{name:<32} {value:.4f}")
    typer.echo(f"wrote {out / 'metrics.json'}")


@app.command("train-vocoder")
def train_vocoder(
    data: Annotated[list[Path], typer.Argument(help="Data dir(s) of recordings.")],
    out: plugin_cli.OutOption,
    kind: Annotated[str, typer.Option(help="hifigan or mel-gl (mel refiner + Griffin-Lim).")] = "hifigan",
    preset: Annotated[str, typer.Option(help="HiFi-GAN size: tiny, small, v1.")] = "tiny",
    steps: Annotated[int, typer.Option(help="Optimiser steps.")] = 2000,
    batch_size: Annotated[int, typer.Option(help="Segments per step.")] = 8,
    segment_frames: Annotated[int, typer.Option(help="10 ms frames per training segment.")] = 32,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    resume: plugin_cli.ResumeOption = False,
) -> None:
    """Train a vc vocoder (HiFi-GAN or mel-gl) that renders the TTS log-mels; use it as --vocoder."""
    ensure_writable_dir(out)
    from audiossl.fileio import latest_checkpoint
    from audiossl_speecht5.vocoder import train_mel_vocoder
    from audiossl_vc.train import VocoderTrainConfig

    config = VocoderTrainConfig(
        kind=kind,
        preset=preset,
        steps=steps,
        batch_size=batch_size,
        segment_frames=segment_frames,
        device=device,
        seed=seed,
        layer="0",
    )
    with removed_if_failed(out, started=lambda path: (path / "train.jsonl").exists() or latest_checkpoint(path)):
        checkpoint = train_mel_vocoder(data, out, config, resume=resume)
    typer.echo(f"finished: {checkpoint}")
