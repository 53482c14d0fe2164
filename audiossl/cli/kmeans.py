"""``audiossl kmeans``: fit k-means on frame features of data dirs, and label data dirs with it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from audiossl.config import apply_overrides, load_yaml
from audiossl.fileio import ensure_writable_dir

app = typer.Typer(
    help="Fit mini-batch k-means on frame features (HuBERT targets) and label data dirs with it.",
    no_args_is_help=True,
)


@app.command()
def fit(
    data: Annotated[list[Path], typer.Option("--data", help="Kaldi data dir to fit on; repeat for several.")],
    out: Annotated[Path, typer.Option("--out", help="k-means dir to write (model, config.yaml, quality report).")],
    features: Annotated[
        str | None,
        typer.Option(
            help="Front-end name: mfcc (39-dim MFCC+deltas, the default), fbank, log_mel; or a checkpoint / run dir "
            "of `audiossl pretrain` with --set layer=N (HuBERT iteration >= 2)."
        ),
    ] = None,
    n_clusters: Annotated[int | None, typer.Option(help="Number of clusters k [default: 100].")] = None,
    sample_fraction: Annotated[
        float | None, typer.Option(help="Fraction of utterances to fit on, in (0, 1] [default: 1].")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed of the utterance sample, k-means++, shuffling [default: 0].")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="YAML FitConfig to start from; the flags override it.")] = None,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="Config override key=value, e.g. kmeans.max_iter=20.")
    ] = None,
    dump_dir: Annotated[
        Path | None, typer.Option(help="Write the sampled features here once and fit from them (reused if complete).")
    ] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda when available).")] = None,
    max_hours: Annotated[
        float | None, typer.Option(help="Cap the sample at this many hours of audio (fits from a dump).")
    ] = None,
    nj: Annotated[
        int, typer.Option("--nj", min=1, help="Local processes computing the sample's features (fits from a dump).")
    ] = 1,
) -> None:
    """Fit k-means on features streamed from one or more data dirs; write model, config and quality report.

    With --nj N > 1 or --max-hours, the sample is dumped first (--dump-dir, default OUT/sample); a dump made
    by `audiossl kmeans sample --shard I/N` + `merge-sample` gives the same fit.
    """
    ensure_writable_dir(out)
    if dump_dir is not None:
        ensure_writable_dir(dump_dir)
    # lazy: audiossl.cluster pulls in torch; every `audiossl` start-up imports this module
    from audiossl.cluster.pipeline import fit_kmeans_dir

    fit_config = _fit_config(config, features, sample_fraction, n_clusters, seed, device, max_hours, overrides)
    _, report = fit_kmeans_dir(data, out, fit_config, dump_dir=dump_dir, num_jobs=nj)
    typer.echo(report.to_text(), nl=False)
    typer.echo(f"wrote {out}")


def _fit_config(config, features, sample_fraction, n_clusters, seed, device, max_hours, overrides):
    """The FitConfig of a YAML file (or the defaults) with the flags and --set items applied."""
    from audiossl.cluster.pipeline import FitConfig, default_device

    base = load_yaml(FitConfig, config) if config is not None else FitConfig()
    if config is None and device is None:
        device = default_device()
    flags = {
        "features": features,
        "sample_fraction": sample_fraction,
        "max_hours": max_hours,
        "kmeans.n_clusters": n_clusters,
        "kmeans.seed": seed,
        "kmeans.device": device,
    }
    settings = [f"{key}={value}" for key, value in flags.items() if value is not None]
    return apply_overrides(base, settings + list(overrides or []))


@app.command()
def sample(
    data: Annotated[list[Path], typer.Option("--data", help="Kaldi data dir to sample; repeat for several.")],
    dump_dir: Annotated[Path, typer.Option(help="Feature dump to write (`kmeans fit --dump-dir` reads it).")],
    features: Annotated[
        str | None, typer.Option(help="Front-end name or checkpoint, as for `kmeans fit` [default: mfcc].")
    ] = None,
    sample_fraction: Annotated[
        float | None, typer.Option(help="Fraction of utterances to sample, in (0, 1] [default: 1].")
    ] = None,
    max_hours: Annotated[float | None, typer.Option(help="Cap the sample at this many hours of audio.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the utterance hash [default: 0].")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML FitConfig to start from; the flags override it.")] = None,
    overrides: Annotated[list[str] | None, typer.Option("--set", help="Config override key=value.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda when available).")] = None,
    nj: Annotated[int, typer.Option("--nj", min=1, help="Local worker processes.")] = 1,
    shard: Annotated[
        str | None,
        typer.Option(help="I/N: compute shard I of N of the sample only; then `audiossl kmeans merge-sample DIR`."),
    ] = None,
) -> None:
    """Draw the k-means feature sample into a dump (sharded or not: the same dump); fit it with --dump-dir."""
    ensure_writable_dir(dump_dir)
    # lazy: audiossl.cluster pulls in torch; every `audiossl` start-up imports this module
    from audiossl.cluster.sample import sample_features

    fit_config = _fit_config(config, features, sample_fraction, None, seed, device, max_hours, overrides)
    dump = sample_features(data, fit_config, dump_dir, shard=shard, num_jobs=nj)
    if dump is None:
        typer.echo(f"wrote shard {shard} of the sample to {dump_dir}; when all are done: audiossl kmeans merge-sample")
        return
    typer.echo(f"wrote {dump_dir} ({dump.num_frames} frames x {dump.dim})")


@app.command("merge-sample")
def merge_sample(
    dump_dir: Annotated[Path, typer.Argument(help="The dump dir the `kmeans sample --shard` runs wrote.")],
) -> None:
    """Complete a sharded k-means sample (checks every shard is there, writes index.json)."""
    ensure_writable_dir(dump_dir)
    # lazy: audiossl.cluster pulls in torch; every `audiossl` start-up imports this module
    from audiossl.cluster.sample import merge_sample as merge

    dump = merge(dump_dir)
    typer.echo(f"wrote {dump_dir}/index.json ({dump.num_frames} frames x {dump.dim})")


@app.command()
def label(
    model: Annotated[Path, typer.Option("--model", help="k-means dir written by `audiossl kmeans fit`.")],
    data: Annotated[Path, typer.Option("--data", help="Kaldi data dir to label.")],
    out: Annotated[Path, typer.Option("--out", help="Label dir to write (labels, frame_rate, report).")],
    ref_label: Annotated[
        str | None,
        typer.Option(help="Reference labelling for PNMI/purity: a table of the data dir (utt2digit) or a file."),
    ] = None,
    ark: Annotated[bool, typer.Option("--ark", help="Also write labels.ark/labels.scp (Kaldi int vectors).")] = False,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: the model's device).")] = None,
    nj: Annotated[int, typer.Option("--nj", min=1, help="Local worker processes sharing the utterances.")] = 1,
    shard: Annotated[
        str | None,
        typer.Option(
            help="I/N: label shard I of N only (a cluster array job) into OUT/shard-I-of-N; then "
            "`audiossl kmeans merge-labels OUT` gives exactly the unsharded label dir."
        ),
    ] = None,
    chunk_size: Annotated[
        int,
        typer.Option(
            min=1, help="Utterances per chunk: batches never span one, shards and jobs split on chunk boundaries."
        ),
    ] = 64,
) -> None:
    """Label every utterance of a data dir (one cluster per frame) with the features the model was fitted on."""
    ensure_writable_dir(out)
    # lazy: audiossl.cluster pulls in torch; every `audiossl` start-up imports this module
    from audiossl.cluster.pipeline import label_with_kmeans_dir

    report = label_with_kmeans_dir(
        model, data, out, reference=ref_label, ark=ark, device=device, shard=shard, num_jobs=nj, chunk_size=chunk_size
    )
    if report is None:
        typer.echo(f"wrote shard {shard} under {out}; when every shard is done: audiossl kmeans merge-labels {out}")
        return
    typer.echo(report.to_text(), nl=False)
    typer.echo(f"wrote {out}")


@app.command("merge-labels")
def merge_labels(
    out: Annotated[Path, typer.Argument(help="The label dir the shards were run with (--out of kmeans label).")],
    ark: Annotated[bool, typer.Option("--ark", help="Also write labels.ark/labels.scp (Kaldi int vectors).")] = False,
    keep_parts: Annotated[bool, typer.Option(help="Keep OUT/shard-I-of-N after merging.")] = False,
) -> None:
    """Merge the shards of `kmeans label --shard I/N --out OUT` into the label dir OUT (exactly the unsharded one)."""
    ensure_writable_dir(out)
    # lazy: audiossl.cluster pulls in torch; every `audiossl` start-up imports this module
    from audiossl.cluster.label_shards import merge_label_parts, write_ark

    report = merge_label_parts(out, keep_parts=keep_parts)
    if ark:
        write_ark(out)
    typer.echo(report.to_text(), nl=False)
    typer.echo(f"wrote {out}")
