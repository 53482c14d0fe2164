"""``audiossl features``: look at and summarise front-end features of a data dir."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from audiossl.errors import UserError
from audiossl.fileio import ensure_writable_file

app = typer.Typer(help="Compute, plot and summarise front-end features of a data directory.", no_args_is_help=True)


@app.command()
def plot(
    data_dir: Annotated[Path, typer.Argument(help="Kaldi-style data directory.")],
    out: Annotated[Path, typer.Option(help="PNG file to write.")],
    frontend: Annotated[str, typer.Option(help="Front-end name (see `audiossl features list`).")] = "fbank",
    utt: Annotated[str | None, typer.Option(help="Utterance id to plot (default: the first).")] = None,
    sample_rate: Annotated[int, typer.Option(help="Rate the audio is resampled to (Hz).")] = 16000,
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            "-c",
            help="Pretraining preset or YAML: plot its front-end's features with the mask its objective "
            "would draw (red).",
        ),
    ] = None,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="Override a value of --config: key.sub=value.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the drawn mask (with --config).")] = 0,
) -> None:
    """Plot one utterance's features as a spectrogram PNG (with --config: and its pretraining mask)."""
    ensure_writable_file(out)
    # lazy: audio.plot pulls in matplotlib and torch; every `audiossl` start-up imports this module
    from audiossl.audio.plot import plot_features
    from audiossl.data.features import utterance_features

    if config is None:
        if overrides:
            raise UserError("--set changes a --config; give --config too")
        utt_id, features = utterance_features(data_dir, frontend, utt=utt, sample_rate=sample_rate)
        plot_features(features, out, title=f"{utt_id} ({frontend})")
        typer.echo(f"wrote {out}")
        return
    # lazy: audiossl.train pulls in torch; every `audiossl` start-up imports this module
    from audiossl.train.config import frontend_settings, resolve_config
    from audiossl.train.maskplot import mask_cells

    run_config = resolve_config(config, overrides or [])
    settings = frontend_settings(run_config)
    name = run_config.data.frontend if settings is not None else "fbank"  # waveform encoders: show fbank
    rate = run_config.data.sample_rate
    utt_id, features = utterance_features(data_dir, name, utt=utt, sample_rate=rate, frontend_config=settings)
    samples = round(features.shape[0] * rate / 100)  # 10 ms frames: enough to count waveform tokens
    cells = mask_cells(run_config, features, seed=seed, num_samples=samples)
    what = f"{run_config.objective.name} mask" if cells is not None else "no token mask"
    plot_features(features, out, title=f"{utt_id} ({name}, {what})", mask=cells)
    typer.echo(f"wrote {out}")


@app.command()
def stats(
    data_dir: Annotated[Path, typer.Argument(help="Kaldi-style data directory.")],
    out: Annotated[Path, typer.Option(help="Where to save the statistics (.npz).")],
    frontend: Annotated[str, typer.Option(help="Front-end name (see `audiossl features list`).")] = "fbank",
    sample_rate: Annotated[int, typer.Option(help="Rate the audio is resampled to (Hz).")] = 16000,
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            "-c",
            help="Pretraining preset or YAML: take the front-end, its settings and the rate from it "
            "(the statistics `pretrain --set data.global_stats=OUT` expects).",
        ),
    ] = None,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="Override a value of --config: key.sub=value.")
    ] = None,
    nj: Annotated[int, typer.Option("--nj", min=1, help="Local worker processes sharing the utterances.")] = 1,
    shard: Annotated[
        str | None,
        typer.Option(
            help="I/N: compute shard I of N only (a cluster array job) into OUT's part file "
            "(cmvn.npz -> cmvn.shard-I-of-N.npz); `audiossl features merge-stats OUT` adds the parts up."
        ),
    ] = None,
    chunk_size: Annotated[
        int,
        typer.Option(
            min=1, help="Utterances per chunk: batches never span one, shards and jobs split on chunk boundaries."
        ),
    ] = 64,
) -> None:
    """Compute global per-channel mean and variance over a data dir (for feature normalisation).

    Sharded (--shard I/N, then merge-stats) or with --nj, the result is bit-identical to one process.
    """
    ensure_writable_file(out)
    # lazy: data.features pulls in torch; every `audiossl` start-up imports this module
    from audiossl.data.features import compute_stats_part
    from audiossl.data.shards import Shard, part_path

    parsed = Shard.parse(shard)

    settings = None
    if config is not None:
        # lazy: audiossl.train pulls in torch; every `audiossl` start-up imports this module
        from audiossl.train.config import frontend_settings, resolve_config

        run_config = resolve_config(config, overrides or [])
        frontend, sample_rate = run_config.data.frontend, run_config.data.sample_rate
        settings = frontend_settings(run_config)
        if settings is None:
            raise UserError(f"config {config!r} feeds waveforms to its encoder (frontend: none): nothing to normalise")
    elif overrides:
        raise UserError("--set changes a --config; give --config too")
    part = compute_stats_part(data_dir, frontend, settings, shard=parsed, sample_rate=sample_rate, num_jobs=nj)
    if shard is not None:
        path = part_path(out, parsed)
        part.save(path)
        frames = sum(chunk.count for chunk in part.chunks)
        typer.echo(f"wrote {path} (shard {parsed}: {frames} frames); then: audiossl features merge-stats {out}")
        return
    global_stats = part.total()
    global_stats.save(out)
    typer.echo(f"wrote {out} ({int(global_stats.count)} frames)")


@app.command("merge-stats")
def merge_stats(
    out: Annotated[Path, typer.Argument(help="The statistics file the shards were run with (--out of stats).")],
    keep_parts: Annotated[bool, typer.Option(help="Keep the shard part files after merging.")] = False,
) -> None:
    """Add up the shard parts of `features stats --shard I/N --out OUT` into OUT (exactly the unsharded result)."""
    ensure_writable_file(out)
    # lazy: data.features pulls in torch; every `audiossl` start-up imports this module
    from audiossl.data.features import merge_stats_parts
    from audiossl.data.shards import find_parts

    parts = find_parts(out)
    global_stats = merge_stats_parts(parts)
    global_stats.save(out)
    if not keep_parts:
        for path in parts:
            path.unlink()
    typer.echo(f"wrote {out} ({int(global_stats.count)} frames from {len(parts)} shards)")


@app.command("list")
def list_frontends() -> None:
    """List the registered front-ends."""
    # lazy: audiossl.audio pulls in torch; every `audiossl` start-up imports this module
    from audiossl.audio import FRONTENDS

    for name in FRONTENDS.names():
        spec = FRONTENDS.get(name)
        kind = "learnable" if spec.learnable else "fixed"
        typer.echo(f"{name:14s} {kind:9s} {spec.config_class.__name__}")
