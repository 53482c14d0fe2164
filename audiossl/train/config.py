"""The pretraining config: data, encoder, objective, optimiser and run sections, and shipped presets.

A run is described by one :class:`PretrainConfig`. Presets ship with the package as YAML under
``audiossl/configs/`` (``mspm-ast-tiny``, ...); :func:`resolve_config` takes a preset name or a
YAML path plus ``key=value`` overrides. Every key is checked: the fixed sections against their
dataclasses, and the free-form mappings against the class they configure (``encoder.overrides``
against the encoder family's config, ``objective.config`` against the objective's config,
``data.frontend_config`` against the front-end's config), so a typo anywhere is a
:class:`~audiossl.errors.ConfigError` naming the file and line.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from audiossl.config import apply_overrides, build_config, from_dict, read_yaml, to_dict
from audiossl.config import check_keys as config_check_keys
from audiossl.data.backends import check_data_backend
from audiossl.data.config import DataConfig
from audiossl.errors import ConfigError
from audiossl.models.config import EncoderSection, encoder_config, frontend_settings

__all__ = [
    "DataConfig",
    "EncoderSection",
    "ObjectiveSection",
    "OptimConfig",
    "PretrainConfig",
    "RunConfig",
    "config_from_dict",
    "dump_config",
    "encoder_config",
    "frontend_settings",
    "list_presets",
    "objective_config",
    "resolve_config",
]


@dataclass(kw_only=True)
class ObjectiveSection:
    """Which objective trains the encoder."""

    name: str = "mspm"
    """Registered objective (``audiossl objectives list``): mspm, wav2vec2, w2vbert."""

    config: dict[str, Any] = field(default_factory=dict)
    """Fields of the objective's config that differ from its defaults; checked against its config class."""


#: Warm-up fraction of ``run.max_steps`` when a config sets neither ``optim.warmup_steps`` nor a ratio.
DEFAULT_WARMUP_RATIO = 0.08


@dataclass(kw_only=True)
class OptimConfig:
    """AdamW with warm-up and a decay schedule."""

    lr: float = 5.0e-4
    """Peak learning rate (reached at the end of the warm-up)."""

    betas: tuple[float, float] = (0.9, 0.98)
    """AdamW betas."""

    eps: float = 1.0e-6
    """AdamW epsilon."""

    weight_decay: float = 0.01
    """Decoupled weight decay, applied to weight matrices only (not to biases, norms or 1-D parameters)."""

    warmup_steps: int | None = None
    """Steps of linear warm-up from lr / warmup_steps to lr; when set, it wins over ``warmup_ratio``
    (``--set optim.warmup_steps=N`` on a preset that sets a ratio). None = ``warmup_ratio``."""

    warmup_ratio: float = DEFAULT_WARMUP_RATIO
    """Warm-up as a fraction of ``run.max_steps`` (rounded down, at least 1 step), used when ``warmup_steps``
    is None: the warm-up scales with the run, so a 300-step run warms up for 24 steps, not 1000.
    The default 0.08 is the 8% of wav2vec 2.0 and HuBERT (Baevski et al. 2020; Hsu et al. 2021)."""

    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    """Decay after the warm-up, reaching ``min_lr_ratio * lr`` at ``run.max_steps``."""

    min_lr_ratio: float = 0.0
    """Final learning rate as a fraction of ``lr``."""

    grad_clip: float | None = 10.0
    """Clip the global gradient norm to this value; None = no clipping (the norm is still logged)."""

    accumulation_steps: int = 1
    """Micro-batches whose gradients are averaged into one optimizer step."""

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.eps <= 0 or self.weight_decay < 0:
            raise ConfigError("optim.lr and optim.eps must be > 0 and optim.weight_decay >= 0")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise ConfigError(f"optim.warmup_steps must be >= 0 or null, got {self.warmup_steps}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ConfigError(f"optim.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"optim.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ConfigError(f"optim.grad_clip must be > 0 or null, got {self.grad_clip}")
        if self.accumulation_steps < 1:
            raise ConfigError(f"optim.accumulation_steps must be >= 1, got {self.accumulation_steps}")

    def warmup_for(self, max_steps: int) -> int:
        """Warm-up steps of a run of ``max_steps``: ``warmup_steps`` when set, else ``warmup_ratio`` of it."""
        if self.warmup_steps is not None:
            return self.warmup_steps
        if self.warmup_ratio == 0.0:
            return 0
        return max(int(self.warmup_ratio * max_steps + 1e-9), 1)  # floor: 10% of 808 steps is 80


@dataclass(kw_only=True)
class RunConfig:
    """Length, precision, device, logging, checkpoints and health checks of a run."""

    max_steps: int = 10000
    """Optimizer steps to train for (the lr schedule decays until this step)."""

    max_minutes: float | None = None
    """Wall-clock budget of one invocation in minutes (set-up included); None = none. When it is spent the
    run stops after the current step, writes a checkpoint, logs why and exits 0; ``--resume`` continues
    exactly where it stopped, with a fresh budget. The schedule still runs to ``max_steps``: the log warns
    when the budget will end the run long before that (set ``max_steps`` to what fits, as the ``-cpu``
    presets do)."""

    seed: int = 0
    """Seed of weights, data order, crops and masks: the same seed gives the same run."""

    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """Autocast dtype of the objective's forward pass (fp16 uses a gradient scaler)."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    """``auto`` = CUDA when available; under torchrun each process takes cuda:LOCAL_RANK."""

    num_threads: int | None = None
    """CPU threads of torch in each process; None = torch's default."""

    log_every: int = 10
    """Steps between log lines (JSONL, TensorBoard, console)."""

    checkpoint_every: int = 1000
    """Steps between checkpoints (one is also written at the end and when the run is interrupted)."""

    keep_last: int = 3
    """Checkpoints ``ckpt-<step>.pt`` to keep; older ones are deleted."""

    keep_best: bool = True
    """Also keep ``best.pt``: the checkpoint with the lowest validation loss, or without validation data
    the lowest bias-corrected moving average of the training loss (``ema_decay``)."""

    ema_decay: float = 0.98
    """Decay of the training-loss moving average logged as ``loss_ema`` and used to pick ``best.pt``."""

    valid_data: list[str] = field(default_factory=list)
    """Data dirs to compute a validation loss on (fixed masks per batch); empty = none."""

    init_from: str | None = None
    """Checkpoint (or run dir: its newest checkpoint) whose model weights a new run starts from, e.g. the
    previous iteration's; heads tied to the targets (HuBERT's cluster embeddings, DINO's pseudo-speaker
    classifier) stay freshly initialised. Ignored on ``--resume`` (the run's own checkpoint wins)."""

    valid_every: int | None = None
    """Steps between validations; None = at every checkpoint."""

    valid_max_batches: int | None = None
    """Validate on at most this many batches per process; None = all."""

    collapse_perplexity: float = 4.0
    """Warn of codebook collapse when the objective's ``code_perplexity`` metric falls below this
    (the sum over G groups of exp(entropy) of code use: G means one entry per group)."""

    max_length_drift: float = 1.0
    """Warn when the objective's ``length_drift`` metric (frames between labels and encoder outputs)
    exceeds this."""

    find_unused_parameters: bool = False
    """DistributedDataParallel option for objectives that leave some parameters unused in a step."""

    tensorboard: bool = True
    """Write TensorBoard scalars under ``RUN_DIR/tensorboard``."""

    distributed: Literal["ddp", "fsdp"] = "ddp"
    """How the model is spread over the processes of a torchrun job: ``ddp`` (DistributedDataParallel:
    every process holds the whole model and optimizer, gradients are all-reduced) or ``fsdp``
    (PyTorch's FSDP2 ``fully_shard``: parameters, gradients and AdamW states sharded over the
    processes, each encoder block gathered just before it runs; for encoders too large for DDP).
    Checkpoints are full either way (see docs/distributed.md); fsdp does not take precision fp16."""

    activation_checkpointing: bool = False
    """Keep only each encoder block's input in the forward pass and recompute the block in backward:
    activation memory of one block instead of all, for about one more forward pass of compute."""

    compile: bool = False
    """``torch.compile`` each encoder block (regional compilation: one graph reused by every block).
    The first steps are slower (compilation); results match the eager run to float rounding."""

    compile_backend: str = "inductor"
    """``torch.compile`` backend of ``compile``: ``inductor`` (generates kernels; on CPU it needs a C++
    compiler) or another registered backend (``aot_eager`` traces and runs eagerly, for debugging)."""

    dist_timeout_s: float | None = None
    """Seconds a collective waits for the other processes before the run fails (gloo) or NCCL's
    watchdog tears it down: the bound on a hang when a process stops answering. None = torch's
    default (10 min for NCCL, 30 min for gloo). A process that dies is named at once either way."""

    def __post_init__(self) -> None:
        if self.distributed == "fsdp" and self.precision == "fp16":
            raise ConfigError("run.distributed=fsdp does not take precision fp16 (use bf16 or fp32)")
        if self.dist_timeout_s is not None and self.dist_timeout_s <= 0:
            raise ConfigError(f"run.dist_timeout_s must be > 0 or null, got {self.dist_timeout_s}")
        for name in ("max_steps", "log_every", "checkpoint_every", "keep_last"):
            if getattr(self, name) < 1:
                raise ConfigError(f"run.{name} must be >= 1, got {getattr(self, name)}")
        if self.valid_every is not None and self.valid_every < 1:
            raise ConfigError(f"run.valid_every must be >= 1 or null, got {self.valid_every}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"run.ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ConfigError(f"run.num_threads must be >= 1 or null, got {self.num_threads}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ConfigError(f"run.max_minutes must be > 0 or null, got {self.max_minutes}")


@dataclass(kw_only=True)
class PretrainConfig:
    """Everything that defines a pretraining run except the data dirs and the run dir."""

    data: DataConfig = field(default_factory=DataConfig)
    """Audio loading, batching, front-end and normalisation."""

    encoder: EncoderSection = field(default_factory=EncoderSection)
    """The encoder family, preset and overrides."""

    objective: ObjectiveSection = field(default_factory=ObjectiveSection)
    """The self-supervised objective and its config."""

    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimiser and learning-rate schedule."""

    run: RunConfig = field(default_factory=RunConfig)
    """Steps, seed, precision, device, logging and checkpoints."""


# ----------------------------------------------------------------------------- sub-configs


def objective_config(config: PretrainConfig) -> Any:
    """The objective's config object, from ``objective.config`` over its defaults."""
    import audiossl.objectives  # noqa: F401  (registers the built-in objectives)
    from audiossl.objectives import OBJECTIVES

    spec = OBJECTIVES.get(config.objective.name)
    try:
        return from_dict(spec.config_class, dict(config.objective.config), prefix="objective.config.")
    except ConfigError as error:
        # A sub-config's check names its key from its own section (``mask.ratio: ...``): name it
        # from the top of the pretraining config, so that the message (and the YAML line) points at it.
        fields = {f.name for f in dataclasses.fields(spec.config_class)}
        head = re.match(r"^(\w+)[.:\[]", error.message)
        if error.path is None and head is not None and head[1] in fields:
            message = re.sub(rf"(?<![\w.]){head[1]}(?=[.\[]\w|:)", f"objective.config.{head[1]}", error.message)
            raise ConfigError(message) from None
        raise


def validate(config: PretrainConfig) -> None:
    """Build every sub-config once so bad names and values fail before any data is read."""
    encoder_config(config)
    objective_config(config)
    check_data_backend(config.data, frontend_settings(config))


# ----------------------------------------------------------------------------- presets and files

#: Where the shipped presets live (package data).
PRESET_PACKAGE = "audiossl"
PRESET_DIR = "configs"


def _preset_files() -> dict[str, Any]:
    folder = resources.files(PRESET_PACKAGE) / PRESET_DIR
    if not folder.is_dir():
        return {}
    return {item.name[: -len(".yaml")]: item for item in folder.iterdir() if item.name.endswith(".yaml")}


def list_presets() -> list[tuple[str, str]]:
    """Shipped presets as (name, description): the description is the YAML file's first comment line."""
    rows = []
    for name, item in sorted(_preset_files().items()):
        first = next((line for line in item.read_text(encoding="utf-8").splitlines() if line.startswith("#")), "#")
        rows.append((name, first.lstrip("#").strip()))
    return rows


def preset_path(name: str) -> Path:
    """The YAML file of shipped preset ``name``."""
    files = _preset_files()
    if name not in files:
        raise ConfigError(f"unknown config {name!r}: not a file, nor a shipped preset ({', '.join(sorted(files))})")
    return Path(str(files[name]))


def _free_targets(data: dict[str, Any]) -> dict[tuple[str, ...], type]:
    """The classes that the free-form mappings of a raw config must fit (when their names resolve)."""
    import audiossl.objectives  # noqa: F401
    from audiossl.audio.frontends import FRONTENDS
    from audiossl.encoders import ENCODERS
    from audiossl.objectives import OBJECTIVES

    targets: dict[tuple[str, ...], type] = {}
    encoder = data.get("encoder") or {}
    family = encoder.get("family", EncoderSection.family) if isinstance(encoder, dict) else None
    if isinstance(family, str) and family in ENCODERS:
        targets[("encoder", "overrides")] = ENCODERS.get(family).config_class
    objective = data.get("objective") or {}
    name = objective.get("name", ObjectiveSection.name) if isinstance(objective, dict) else None
    if isinstance(name, str) and name in OBJECTIVES:
        targets[("objective", "config")] = OBJECTIVES.get(name).config_class
    section = data.get("data") or {}
    frontend = section.get("frontend", DataConfig.frontend) if isinstance(section, dict) else None
    if isinstance(frontend, str) and frontend in FRONTENDS:
        targets[("data", "frontend_config")] = FRONTENDS.get(frontend).config_class
    return targets


def check_keys(data: dict[str, Any], source: str | Path | None, lines: dict[tuple[str, ...], int]) -> None:
    """Raise a :class:`ConfigError` (with the line) for the first unknown key of a raw config."""
    config_check_keys(PretrainConfig, data, source, lines, _free_targets(data))


def config_from_dict(
    data: dict[str, Any], source: str | Path | None = None, lines: dict[tuple[str, ...], int] | None = None
) -> PretrainConfig:
    """Check and build a :class:`PretrainConfig` from a raw mapping (keys, types, names, values)."""
    return build_config(PretrainConfig, data, source, lines, free=_free_targets(data), validate=validate)


def resolve_config(name_or_path: str | Path, overrides: list[str] | None = None) -> PretrainConfig:
    """A preset name or a YAML path, with ``key=value`` overrides applied, as a checked config."""
    candidate = Path(name_or_path)
    is_file = candidate.suffix in (".yaml", ".yml") or candidate.is_file() or len(candidate.parts) > 1
    path = candidate if is_file else preset_path(str(name_or_path))
    data, lines = read_yaml(path, "a mapping of sections (data, encoder, objective, optim, run)")
    config = config_from_dict(data, path, lines)
    if overrides:
        changed = apply_overrides(data, overrides, schema=PretrainConfig)
        check_keys(changed, "--set", {})
        config = config_from_dict(changed)
    return config


def plain(value: Any) -> Any:
    """A config dict with tuples turned into lists, for YAML dumps."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def dump_config(config: PretrainConfig) -> str:
    """The config as YAML text (every field, defaults included)."""
    return yaml.safe_dump(plain(to_dict(config)), sort_keys=False)
