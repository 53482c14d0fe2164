"""``audiossl hubert iterate``: HuBERT iterations (k-means, labels, pretraining), each in its own dir, resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
    import dataclasses

    from audiossl.config import apply_overrides, load_yaml
    from audiossl.errors import ConfigError
    from audiossl.train.iterations import IterationsConfig, IterationSpec, run_iterations

    settings = load_yaml(IterationsConfig, plan) if plan is not None else IterationsConfig()
    changes: dict[str, object] = {}
    if config is not None:
        changes["pretrain"] = config
    if overrides:
        changes["overrides"] = [*settings.overrides, *overrides]
    if ref_label is not None:
        changes["reference"] = ref_label
    specs = list(settings.iterations)
    if clusters:
        specs = [
            specs[i] if i < len(specs) else IterationSpec(layer=specs[-1].layer or 6) for i in range(len(clusters))
        ]
        specs = [dataclasses.replace(spec, n_clusters=k) for spec, k in zip(specs, clusters, strict=True)]
    if layers:
        if len(layers) not in (1, len(specs) - 1):
            raise ConfigError(f"--layer: give one layer, or one per iteration after the first ({len(specs) - 1})")
        chosen = layers * (len(specs) - 1) if len(layers) == 1 else layers
        specs = [specs[0], *(dataclasses.replace(spec, layer=n) for spec, n in zip(specs[1:], chosen, strict=True))]
    if steps:
        if len(steps) != len(specs):
            raise ConfigError(f"--steps: give one value per iteration ({len(specs)})")
        specs = [dataclasses.replace(spec, max_steps=n) for spec, n in zip(specs, steps, strict=True)]
    settings = dataclasses.replace(settings, **changes, iterations=specs)
    settings = apply_overrides(settings, list(plan_overrides or []))
    result = run_iterations(settings, data, out)
    if result.stopped_by is not None:
        typer.echo(f"stopped ({result.stopped_by}); run the same command again to continue", err=True)
        raise typer.Exit(130)
    typer.echo((out / "summary.txt").read_text(encoding="utf-8"), nl=False)
    typer.echo(f"ran: {', '.join(result.ran) or 'nothing (every stage was complete)'}")
