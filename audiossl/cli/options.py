"""Options every downstream plugin command shares, defined once.

A plugin's ``train`` command takes the task's own options plus the same upstream, data, mode,
optimiser and run options as every other plugin. The option types below carry the flag names
and help texts; :func:`downstream_options` adds the :class:`~audiossl.downstream.trainer.DownstreamConfig`
flags to a command in one line and hands the command the config they build::

    @app.command()
    @downstream_options()
    def train(data: DataArgument, out: OutOption, upstream: UpstreamOption, ...,
              settings: DownstreamSettings = None, resume: ResumeOption = False) -> None:
        run_training(task, upstream, data, out, settings, resume=resume)

The flags take the place of the ``settings`` parameter, in :data:`DOWNSTREAM_FLAGS` order, so
``--help`` lists them where the parameter stands. :func:`option_group` is the general form, for
a plugin whose commands share options of their own (the er plugin's pooling and classifier).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from audiossl.config import apply_overrides, load_yaml

if TYPE_CHECKING:
    from audiossl.downstream.trainer import DownstreamConfig

Command = TypeVar("Command", bound=Callable[..., Any])

DataArgument = Annotated[Path, typer.Argument(help="Kaldi data dir with the task's labels.", show_default=False)]
RunDirArgument = Annotated[Path, typer.Argument(help="Downstream run dir (from `train --out`).", show_default=False)]
UpstreamOption = Annotated[
    str,
    typer.Option(
        "--upstream",
        "-u",
        help="Pretrained checkpoint or run dir; random:<checkpoint> (random weights); fbank[:RATE[:BINS]] "
        "(utterance CMVN); fbank-raw[:RATE[:BINS]].",
    ),
]
OutOption = Annotated[Path, typer.Option("--out", "-o", help="Output dir (the run dir for train).")]
ValidOption = Annotated[Path | None, typer.Option("--valid", help="Validation data dir (loss at checkpoints).")]
ModeOption = Annotated[str | None, typer.Option("--mode", help="frozen (weighted layer sum, SUPERB) or finetune.")]
FreezeStepsOption = Annotated[
    int | None, typer.Option("--freeze-steps", help="finetune: encoder frozen for the first N steps.")
]
MaxStepsOption = Annotated[
    int | None, typer.Option("--max-steps", help="Optimizer steps [default: from the data size, 500-4000].")
]
LrOption = Annotated[
    float | None, typer.Option("--lr", help="Learning rate of head and layer weights [default: from the batch size].")
]
BudgetOption = Annotated[
    float | None, typer.Option("--budget-minutes", help="Stop after this many minutes of training; keep the best.")
]
LrSweepOption = Annotated[
    bool | None,
    typer.Option("--lr-sweep/--no-lr-sweep", help="Train at lr 1e-4..1e-2 (log grid); keep the best on dev data."),
]
EarlyStoppingOption = Annotated[
    bool | None,
    typer.Option(
        "--early-stopping/--no-early-stopping",
        help="Keep the best dev checkpoint (dev: --valid, else a tenth of DATA held out) [default: on].",
    ),
]
UpstreamLrOption = Annotated[float | None, typer.Option("--upstream-lr", help="finetune: encoder learning rate.")]
BatchSecondsOption = Annotated[float | None, typer.Option("--batch-seconds", help="Padded seconds per batch.")]
MaxUttSecondsOption = Annotated[
    float | None, typer.Option("--max-utt-seconds", help="Train on random crops of this length (e.g. 3).")
]
SeedOption = Annotated[int | None, typer.Option("--seed", help="Seed of weights, batch order and crops.")]
DeviceOption = Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda, cuda:1 ...")]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="YAML DownstreamConfig to start from; flags override it.")
]
SetOption = Annotated[list[str] | None, typer.Option("--set", help="Override a DownstreamConfig field: key=value.")]
ResumeOption = Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its newest checkpoint.")]
CheckpointOption = Annotated[Path | None, typer.Option("--checkpoint", help="Checkpoint to use [default: newest].")]

#: The annotation of the parameter :func:`downstream_options` replaces (it receives the built config).
DownstreamSettings = Any


@dataclass(frozen=True)
class Flag:
    """One command-line option of a group: the Python parameter name, its typer annotation, its default."""

    name: str
    annotation: Any
    default: Any = None


#: DownstreamConfig fields that have a flag, in ``--help`` order (``--config`` and ``--set`` follow them).
DOWNSTREAM_FLAGS: dict[str, Flag] = {
    flag.name: flag
    for flag in (
        Flag("mode", ModeOption),
        Flag("freeze_steps", FreezeStepsOption),
        Flag("max_steps", MaxStepsOption),
        Flag("lr", LrOption),
        Flag("upstream_lr", UpstreamLrOption),
        Flag("batch_seconds", BatchSecondsOption),
        Flag("max_utt_seconds", MaxUttSecondsOption),
        Flag("seed", SeedOption),
        Flag("device", DeviceOption),
        Flag("budget_minutes", BudgetOption),
        Flag("lr_sweep", LrSweepOption),
        Flag("early_stopping", EarlyStoppingOption),
    )
}
#: The flags a plugin's ``train`` command takes unless it names others.
TRAIN_FLAGS = (
    "mode",
    "freeze_steps",
    "max_steps",
    "lr",
    "upstream_lr",
    "batch_seconds",
    "seed",
    "device",
    "budget_minutes",
    "lr_sweep",
    "early_stopping",
)


def option_group(target: str, flags: Sequence[Flag], build: Callable[..., Any]) -> Callable[[Command], Command]:
    """A decorator that replaces the command parameter ``target`` by ``flags`` and passes ``build(**flag values)``.

    typer reads the command's signature, so the flags appear in ``--help`` where ``target``
    stands, with their own names, help and defaults; the decorated function still receives
    one ``target`` argument.
    """
    names = [flag.name for flag in flags]

    def decorate(command: Command) -> Command:
        signature = inspect.signature(command, eval_str=True)
        parameters = list(signature.parameters.values())
        position = [parameter.name for parameter in parameters].index(target)
        clash = set(names) & {parameter.name for parameter in parameters}
        if clash:
            raise TypeError(f"{command.__name__} already has parameters {sorted(clash)} of the {target} group")
        kind = parameters[position].kind
        added = [inspect.Parameter(flag.name, kind, default=flag.default, annotation=flag.annotation) for flag in flags]
        parameters[position : position + 1] = added

        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in names if name in kwargs}
            return command(*args, **kwargs, **{target: build(**values)})

        wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters if p.annotation is not p.empty}
        del wrapper.__wrapped__  # typer must read the new signature, not the command's
        return wrapper  # type: ignore[return-value]

    return decorate


def downstream_options(names: Sequence[str] = TRAIN_FLAGS, *, target: str = "settings") -> Callable[[Command], Command]:
    """Add the DownstreamConfig flags ``names`` (see :data:`DOWNSTREAM_FLAGS`), ``--config`` and ``--set``.

    The command's ``target`` parameter receives the :class:`DownstreamConfig` they build
    (:func:`downstream_config`: the YAML file, then the flags given, then ``--set``).
    """
    flags = [DOWNSTREAM_FLAGS[name] for name in names]
    flags += [Flag("config", ConfigOption), Flag("sets", SetOption)]

    def build(config: Path | None = None, sets: list[str] | None = None, **values: Any) -> DownstreamConfig:
        return downstream_config(config, sets, **values)

    return option_group(target, flags, build)


def downstream_config(config_file: Path | None = None, sets: list[str] | None = None, **flags: Any) -> DownstreamConfig:
    """A :class:`DownstreamConfig` from an optional YAML file, then the flags that were given, then ``--set``."""
    # Imported here to save start-up time: the downstream trainer pulls in torch and the
    # training engine, and the plugin CLIs are mounted at every `audiossl` start-up.
    from audiossl.downstream.trainer import DownstreamConfig

    base = load_yaml(DownstreamConfig, config_file) if config_file is not None else DownstreamConfig()
    given = [f"{key}={value}" for key, value in flags.items() if value is not None]
    return apply_overrides(base, given + list(sets or []))
