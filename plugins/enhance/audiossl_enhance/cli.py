"""``audiossl se`` and ``audiossl ss``: make pairs / mixtures, train a mask head, evaluate it.

Heavy modules (torch, the trainer, the metrics) are imported inside the commands, so mounting
the plugin at every ``audiossl`` start-up stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from audiossl.cli import plugins as plugin_cli
from audiossl.fileio import ensure_writable_dir
from audiossl_enhance import make_se_task, make_ss_task

se_app = typer.Typer(
    help="Speech enhancement: make noisy/clean pairs, train an STFT mask head, score PESQ, STOI and SI-SNRi.",
    no_args_is_help=True,
)
ss_app = typer.Typer(
    help="Two-speaker separation: make mixtures, train two masks with PIT, score SI-SDRi.",
    no_args_is_help=True,
)

SourceArgument = Annotated[Path, typer.Argument(help="Kaldi data dir of clean speech.", show_default=False)]
SampleRateOption = Annotated[
    int, typer.Option("--sample-rate", help="Rate of the written audio: the rate of the upstream you will train on.")
]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed of every draw (with each utterance id).")]
MinSecondsOption = Annotated[
    float, typer.Option("--min-seconds", help="Leave out utterances shorter than this (PESQ needs 0.25 s).")
]

_TASK_FLAGS = [
    plugin_cli.Flag("hidden_dim", Annotated[int, typer.Option("--hidden-dim", help="LSTM units per direction.")], 256),
    plugin_cli.Flag("num_layers", Annotated[int, typer.Option("--num-layers", help="Bidirectional LSTM layers.")], 2),
    plugin_cli.Flag("dropout", Annotated[float, typer.Option("--dropout", help="Dropout between layers.")], 0.1),
    plugin_cli.Flag(
        "activation",
        Annotated[str, typer.Option("--activation", help="Mask nonlinearity: sigmoid or relu.")],
        "sigmoid",
    ),
    plugin_cli.Flag("loss", Annotated[str, typer.Option("--loss", help="Magnitude distance: l1 or mse.")], "l1"),
    plugin_cli.Flag("n_fft", Annotated[int, typer.Option("--n-fft", help="FFT size (samples).")], 512),
    plugin_cli.Flag("win_length", Annotated[int, typer.Option("--win-length", help="Window (samples).")], 400),
    plugin_cli.Flag("hop_length", Annotated[int, typer.Option("--hop-length", help="Hop (samples).")], 160),
    plugin_cli.Flag(
        "min_seconds",
        Annotated[float, typer.Option("--min-seconds", help="Shortest input accepted (PESQ needs 0.25 s).")],
        0.25,
    ),
    plugin_cli.Flag(
        "plots", Annotated[int, typer.Option("--plots", help="Utterances plotted and written by evaluate.")], 3
    ),
]
se_task_options = plugin_cli.option_group("task", _TASK_FLAGS, make_se_task)
ss_task_options = plugin_cli.option_group("task", _TASK_FLAGS, make_ss_task)


@se_app.command("make-pairs")
def make_pairs(
    data: SourceArgument,
    out: plugin_cli.OutOption,
    snr: Annotated[str, typer.Option("--snr", help="SNRs in dB, comma-separated; one drawn per utterance.")] = (
        "0,5,10,15"
    ),
    noise: Annotated[
        str, typer.Option("--noise", help="Generated noises drawn from: white, pink, babble (comma-separated).")
    ] = "white,pink,babble",
    noise_dir: Annotated[
        Path | None, typer.Option("--noise-dir", help="Data dir of noise recordings to use instead.")
    ] = None,
    sample_rate: SampleRateOption = 16000,
    min_seconds: MinSecondsOption = 0.25,
    seed: SeedOption = 0,
) -> None:
    """Noisy copies of DATA at chosen SNRs with clean targets: OUT/wav.scp (noisy), OUT/utt2clean, OUT/utt2snr."""
    ensure_writable_dir(out)
    from audiossl_enhance.mixtures import NoiseSettings, make_noisy_pairs, parse_snrs

    kinds = tuple(kind.strip() for kind in noise.split(",") if kind.strip())
    settings = NoiseSettings(
        snrs_db=parse_snrs(snr),
        noise_kinds=kinds,
        noise_dir=None if noise_dir is None else str(noise_dir),
        sample_rate=sample_rate,
        min_seconds=min_seconds,
        seed=seed,
    )
    made = make_noisy_pairs(data, out, settings)
    typer.echo(f"wrote {len(made.wav_scp)} noisy/clean pairs to {out}")


@se_app.command("pair-dirs")
def pair_dirs_command(
    clean: Annotated[Path, typer.Argument(help="Data dir of the clean utterances.", show_default=False)],
    noisy: Annotated[
        Path, typer.Argument(help="Data dir of the noisy ones (same ids and lengths).", show_default=False)
    ],
    out: plugin_cli.OutOption,
    sample_rate: SampleRateOption = 16000,
) -> None:
    """A pair dir from given CLEAN and NOISY data dirs (Voicebank-DEMAND style), checked id by id."""
    ensure_writable_dir(out)
    from audiossl_enhance.mixtures import pair_dirs

    made = pair_dirs(clean, noisy, out, sample_rate)
    typer.echo(f"wrote {len(made.wav_scp)} noisy/clean pairs to {out}")


@ss_app.command("make-mixtures")
def make_mixtures_command(
    data: SourceArgument,
    out: plugin_cli.OutOption,
    per_utterance: Annotated[
        int, typer.Option("--per-utterance", help="Mixtures per utterance (each with another partner).")
    ] = 1,
    level_db: Annotated[float, typer.Option("--level-db", help="Relative level drawn uniformly in [-L, L] dB.")] = 5.0,
    length: Annotated[str, typer.Option("--length", help="min: cut to the shorter source; max: pad it.")] = "min",
    sample_rate: SampleRateOption = 16000,
    min_seconds: MinSecondsOption = 0.25,
    seed: SeedOption = 0,
) -> None:
    """Two-speaker mixtures of DATA (never a speaker with themselves): OUT/wav.scp, utt2src1, utt2src2."""
    ensure_writable_dir(out)
    from audiossl_enhance.mixtures import MixSettings, make_mixtures

    settings = MixSettings(
        per_utterance=per_utterance,
        level_db=level_db,
        length=length,
        sample_rate=sample_rate,
        min_seconds=min_seconds,
        seed=seed,
    )
    made = make_mixtures(data, out, settings)
    typer.echo(f"wrote {len(made.wav_scp)} mixtures to {out}")


def _train(data: Path, upstream: str, out: Path, valid: Path | None, task: Any, settings: Any, resume: bool) -> None:
    plugin_cli.run_training(task, upstream, data, out, settings, valid=valid, resume=resume)


@se_app.command()
@se_task_options
@plugin_cli.downstream_options()
def train(
    data: plugin_cli.DataArgument,
    upstream: plugin_cli.UpstreamOption,
    out: plugin_cli.OutOption,
    valid: plugin_cli.ValidOption = None,
    task: Any = None,
    settings: plugin_cli.DownstreamSettings = None,
    resume: plugin_cli.ResumeOption = False,
) -> None:
    """Train an enhancement mask head on a pair dir DATA (from make-pairs or pair-dirs) over an upstream."""
    _train(data, upstream, out, valid, task, settings, resume)


@ss_app.command("train")
@ss_task_options
@plugin_cli.downstream_options()
def train_ss(
    data: plugin_cli.DataArgument,
    upstream: plugin_cli.UpstreamOption,
    out: plugin_cli.OutOption,
    valid: plugin_cli.ValidOption = None,
    task: Any = None,
    settings: plugin_cli.DownstreamSettings = None,
    resume: plugin_cli.ResumeOption = False,
) -> None:
    """Train a two-source mask head with utterance-level PIT on a mixture dir DATA over an upstream."""
    _train(data, upstream, out, valid, task, settings, resume)


@se_app.command()
def evaluate(
    run_dir: plugin_cli.RunDirArgument,
    data: plugin_cli.DataArgument,
    out: plugin_cli.OutOption,
    checkpoint: plugin_cli.CheckpointOption = None,
    device: plugin_cli.DeviceOption = None,
) -> None:
    """Enhance DATA and score it: PESQ, STOI, SI-SNR(i); report.md, report.json, spectrograms/*.png, audio/."""
    plugin_cli.run_evaluation(run_dir, data, out, checkpoint=checkpoint, device=device)


@ss_app.command("evaluate")
def evaluate_ss(
    run_dir: plugin_cli.RunDirArgument,
    data: plugin_cli.DataArgument,
    out: plugin_cli.OutOption,
    checkpoint: plugin_cli.CheckpointOption = None,
    device: plugin_cli.DeviceOption = None,
) -> None:
    """Separate DATA and score it: SI-SDR and SI-SDRi (best permutation); reports, spectrograms/*.png, audio/."""
    plugin_cli.run_evaluation(run_dir, data, out, checkpoint=checkpoint, device=device)
