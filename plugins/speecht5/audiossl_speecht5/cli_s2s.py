"""``audiossl s2s train | convert | evaluate``: speech-to-speech voice conversion through the speech decoder.

Heavy imports happen inside the commands: audiossl mounts this app at every start-up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from audiossl.cli import plugins as plugin_cli
from audiossl.fileio import ensure_writable_dir

app = typer.Typer(
    help="Voice conversion speech -> speech: any upstream's frames -> target speaker's log-mel (decoder) -> vocoder.",
    no_args_is_help=True,
)

VocoderOption = Annotated[
    Path | None, typer.Option(help="A vocoder run of `audiossl tts train-vocoder`; default: Griffin-Lim.")
]


@app.command()
@plugin_cli.downstream_options()
def train(
    data: Annotated[Path, typer.Argument(help="Data dir with wav.scp and utt2spk.")],
    out: plugin_cli.OutOption,
    upstream: plugin_cli.UpstreamOption,
    valid: plugin_cli.ValidOption = None,
    decoder_layers: Annotated[int, typer.Option(help="Decoder blocks (width: the upstream's).")] = 2,
    reduction: Annotated[int, typer.Option(help="Mel frames per decoder step.")] = 2,
    speaker_dim: Annotated[int, typer.Option(help="Width of the learned speaker embeddings.")] = 64,
    max_frames: Annotated[int, typer.Option(help="Longest utterance in 10 ms mel frames.")] = 1000,
    dropout: Annotated[float, typer.Option(help="Decoder dropout.")] = 0.1,
    init: Annotated[
        Path | None,
        typer.Option(help="speecht5 pretraining run whose decoder and speech pre/post-nets start the head."),
    ] = None,
    settings: plugin_cli.DownstreamSettings = None,
    resume: plugin_cli.ResumeOption = False,
) -> None:
    """Train the speech decoder to rebuild DATA's log-mels from the upstream's frames and speaker embeddings."""
    from audiossl_speecht5.s2s import S2STask

    task = S2STask(
        decoder_layers=decoder_layers,
        reduction=reduction,
        speaker_dim=speaker_dim,
        max_frames=max_frames,
        dropout=dropout,
        init=None if init is None else str(init.resolve()),
    )
    plugin_cli.run_training(task, upstream, data, out, settings, valid=valid, resume=resume)


@app.command()
def convert(
    run_dir: plugin_cli.RunDirArgument,
    data: Annotated[Path, typer.Argument(help="Data dir of source utterances.")],
    out: plugin_cli.OutOption,
    speaker: Annotated[
        str | None, typer.Option(help="Target speaker (one of the run's); default: the next speaker after each source.")
    ] = None,
    vocoder: VocoderOption = None,
    seed: Annotated[int, typer.Option(help="Seed of the pre-net dropout.")] = 0,
) -> None:
    """Convert every utterance of DATA into the target voice: OUT is a data dir of the converted wavs."""
    ensure_writable_dir(out)
    from audiossl_speecht5.s2s_eval import convert_data_dir

    converted, _, _ = convert_data_dir(run_dir, data, out, speaker=speaker, vocoder=vocoder, seed=seed)
    typer.echo(f"wrote {converted / 'wav.scp'}")


@app.command()
def evaluate(
    run_dir: plugin_cli.RunDirArgument,
    data: Annotated[Path, typer.Argument(help="Data dir of source utterances (speakers the run knows).")],
    out: plugin_cli.OutOption,
    vocoder: VocoderOption = None,
    sv: Annotated[Path | None, typer.Option(help="sv run: similarity of conversions to target and source.")] = None,
    asr: Annotated[Path | None, typer.Option(help="ASR run: WER/CER of the conversions.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the pre-net dropout.")] = 0,
) -> None:
    """Reconstruction MCD; convert each utterance to the next speaker: similarity (--sv) and CER (--asr)."""
    ensure_writable_dir(out)
    from audiossl_speecht5.s2s_eval import evaluate_s2s

    metrics = evaluate_s2s(run_dir, data, out, vocoder=vocoder, asr_run=asr, sv_run=sv, seed=seed)
    for name, value in metrics.items():
        typer.echo(f"{name:<34} {value:.4f}")
    typer.echo(f"wrote {out / 'metrics.json'}")
