"""``audiossl dino``: the cluster-aware iteration of speaker DINO (pseudo-speakers from a checkpoint)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from audiossl.fileio import ensure_writable_dir

app = typer.Typer(
    help="Speaker DINO helpers: cluster a checkpoint's embeddings into pseudo-speakers.", no_args_is_help=True
)


@app.command()
def cluster(
    run: Annotated[Path, typer.Argument(help="Checkpoint or run dir (its newest checkpoint) of a dino run.")],
    data: Annotated[Path, typer.Option("--data", help="Kaldi data dir to embed and cluster.")],
    k: Annotated[int, typer.Option("--k", help="Number of pseudo-speakers.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Dir to write utt2pseudo and report.json to.")],
    method: Annotated[str, typer.Option(help="kmeans or agglomerative (average linkage, cosine).")] = "kmeans",
    seed: Annotated[int, typer.Option(help="Seed of k-means.")] = 0,
) -> None:
    """Cluster mean-pooled utterance embeddings into K pseudo-speakers; train on them with
    ``--set objective.config.cluster.labels=OUT/utt2pseudo --set run.init_from=RUN``."""
    ensure_writable_dir(out)
    # lazy: cluster and train pull in torch; every `audiossl` start-up imports this module
    from audiossl.cluster.speakers import label_pseudo_speakers
    from audiossl.train import load_pretrained

    report = label_pseudo_speakers(load_pretrained(run), data, k, out, method=method, seed=seed)
    sizes = report["cluster_sizes"]
    typer.echo(f"{report['utterances']} utterances -> {k} pseudo-speakers (sizes {min(sizes)}-{max(sizes)})")
    if "ari_vs_utt2spk" in report:
        typer.echo(f"against utt2spk: ARI {report['ari_vs_utt2spk']:.3f}, NMI {report['nmi_vs_utt2spk']:.3f}")
    typer.echo(f"wrote {out / 'utt2pseudo'}")
