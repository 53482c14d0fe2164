"""``audiossl hubert iterate``: HuBERT iterations (k-means, labels, pretraining), each in its own dir, resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from audiossl.config import apply_overrides, load_yaml
from audiossl.fileio import ensure_writable_dir

app = typer.Typer(
    help="HuBERT: iterations of clustering and masked prediction of cluster labels.", no_args_is_help=True
)


@app.command()
def iterate(
    data: Annotated[list[Path], typer.Option("--data", help="Kaldi data dir of training audio (repeatable).")],
    out: Annotated[Path, typer.Option("--out", help="Run dir: iter1/{kmeans,labels,pretrain}, iter2/..., summary.")],
    config: Annotated[
        str | None,
        typer.Option("--config", "-c", help="Pretraining preset or YAML [default: hubert-conformer-tiny]."),
    ] = None,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="Pretraining override key=value for every iteration (repeatable).")
    ] = None,
    clusters: Annotated[
        list[int] | None,
        typer.Option("--clusters", help="k of each iteration, in order (repeat: --clusters 100 --clusters 500)."),
    ] = None,
    layers: Annotated[
        list[int] | None,
        typer.Option("--layer", help="Block of the previous model clustered by iterations 2, 3, ... (repeatable)."),
    ] = None,
    steps: Annotated[
        list[int] | None, typer.Option("--steps", help="Pretraining steps of each iteration, in order (repeatable).")
    ] = None,
    ref_label: Annotated[
        str | None, typer.Option(help="Reference labelling for PNMI/purity: utt2<name> of the data dir, or a file.")
    ] = None,
    plan: Annotated[
        Path | None, typer.Option(help="YAML IterationsConfig to start from; the other flags override it.")
    ] = None,
    plan_overrides: Annotated[
        list[str] | None,
        typer.Option("--set-kmeans", help="IterationsConfig override, e.g. kmeans.n_init=1 or sample_fraction=0.1."),
    ] = None,
) -> None:
    """Run HuBERT iterations: iteration 1 clusters MFCC, each later one a layer of the previous model.

    Finished stages are skipped, so the same command continues an interrupted run.
    """
    ensure_writable_dir(out)
    # lazy: audiossl.train pulls in torch; every `audiossl` start-up imports this module
    from audiossl.train.iterations import IterationsConfig, flag_overrides, run_iterations

    plan_config = load_yaml(IterationsConfig, plan) if plan is not None else IterationsConfig()
    shortcuts = flag_overrides(
        plan_config,
        pretrain=config,
        overrides=overrides,
        clusters=clusters,
        layers=layers,
        steps=steps,
        reference=ref_label,
    )
    settings = apply_overrides(plan_config, [*shortcuts, *(plan_overrides or [])])
    result = run_iterations(settings, data, out)
    if result.stopped_by is not None:
        typer.echo(f"stopped ({result.stopped_by}); run the same command again to continue", err=True)
        raise typer.Exit(130)
    typer.echo((out / "summary.txt").read_text(encoding="utf-8"), nl=False)
    typer.echo(f"ran: {', '.join(result.ran) or 'nothing (every stage was complete)'}")
