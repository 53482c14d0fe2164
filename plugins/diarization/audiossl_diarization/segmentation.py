"""A pyannote segmentation model (PyanNet: SincNet, LSTM, powerset classes) trained locally, without the hub.

pyannote's ``SpeakerDiarization`` task (Bredin & Laurent, Interspeech 2021; powerset loss: Plaquet
& Bredin, Interspeech 2023) draws random chunks of the corpus's training recordings and learns,
frame by frame, which of up to ``max_speakers_per_chunk`` local speakers are active. Lightning
runs the training on the CPU or a GPU.

The model is saved in our own file (``torch.save`` of plain data: hyperparameters, the task's
specifications as numbers and strings, and the weights; or, for an ``.safetensors`` path, the
weights with the rest as JSON metadata), so loading it never unpickles code.

Loading (:func:`load_segmentation`) reads weights only, whatever the file: our files, and
pyannote's own local checkpoints (``pytorch_model.bin``, a model directory holding one, or a
Lightning ``.ckpt``) are read with ``torch.load(weights_only=True)``, allowing beyond plain data
only pyannote's task description (``Specifications`` with its ``Problem`` and ``Resolution``
enums, pure data) and inert stand-ins for the Lightning callback classes older checkpoints name.
The module is rebuilt here from the stored hyper-parameters (only PyanNet, the architecture of
pyannote's segmentation models, is rebuilt) and the weights are copied in. pyannote's own
``Model.from_pretrained`` is never called: it unpickles the file with ``weights_only=False``, so
a crafted file would run code. A file that cannot be read as weights is refused, naming it.
Hub names are refused: nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from audiossl.config import from_dict
from audiossl.errors import ConfigError, DataError, UserError
from audiossl.fileio import atomic_path, atomic_write, read_weights_only

log = logging.getLogger(__name__)

#: Marks our segmentation files.
FORMAT = "audiossl-diarization-segmentation"
FORMAT_VERSION = 1


@dataclass(kw_only=True)
class SegmentationConfig:
    """Model size and training schedule (defaults: a tiny model that trains in about a minute on a CPU)."""

    duration: float = 2.0
    """Chunk length (seconds) the model is trained on and applied with."""
    max_speakers_per_chunk: int = 2
    """Local speakers per chunk the model can tell apart."""
    max_speakers_per_frame: int = 2
    """Simultaneous speakers per frame (powerset classes)."""
    sincnet_stride: int = 10
    """Stride of SincNet's first convolution (samples)."""
    lstm_hidden: int = 32
    """LSTM units per direction."""
    lstm_layers: int = 1
    """Bidirectional LSTM layers."""
    linear_hidden: int = 32
    """Width of the linear layers after the LSTM."""
    linear_layers: int = 1
    """Linear layers after the LSTM."""
    epochs: int = 5
    """Passes over the training set (an epoch draws total training duration / ``duration`` chunks)."""
    batch_size: int = 16
    """Chunks per batch."""
    lr: float = 3e-3
    """Adam learning rate."""
    seed: int = 0
    """Seed of initialisation and chunk sampling."""

    def __post_init__(self) -> None:
        if self.duration <= 0 or self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ConfigError("duration, epochs, batch_size and lr must be positive")
        if self.max_speakers_per_chunk < 1 or not 1 <= self.max_speakers_per_frame <= self.max_speakers_per_chunk:
            raise ConfigError("need 1 <= max_speakers_per_frame <= max_speakers_per_chunk")


def _pyannet(config: SegmentationConfig, sample_rate: int, task: Any = None):
    from pyannote.audio.models.segmentation import PyanNet

    return PyanNet(
        sincnet={"stride": config.sincnet_stride},
        lstm={
            "hidden_size": config.lstm_hidden,
            "num_layers": config.lstm_layers,
            "bidirectional": True,
            "monolithic": True,
            "dropout": 0.0,
        },
        linear={"hidden_size": config.linear_hidden, "num_layers": config.linear_layers},
        sample_rate=sample_rate,
        task=task,
    )


class _EpochLog:
    """Collects the metrics Lightning reports at the end of every validation epoch."""

    def __init__(self) -> None:
        import lightning

        log_rows = self.rows = []

        class Callback(lightning.Callback):
            def on_validation_epoch_end(self, trainer, module) -> None:
                if trainer.sanity_checking:
                    return
                row = {"epoch": trainer.current_epoch}
                row.update({k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1})
                log_rows.append(row)

        self.callback = Callback()


def train_segmentation(
    corpus_dir: str | Path,
    out: str | Path,
    config: SegmentationConfig,
    *,
    overwrite: bool = False,
    device: str = "cpu",
) -> dict[str, Any]:
    """Train PyanNet on the corpus's train subset (validated on development); save it to ``out``.

    Returns ``{"epochs": [per-epoch metrics], "path": out}``; ``out.json`` beside the model holds the same.
    """
    import lightning
    from pyannote.audio.tasks import SpeakerDiarization

    # lazy: the corpus module pulls in librosa; loading a model does not need it
    from audiossl_diarization.corpus import corpus_sample_rate, load_protocol

    out = Path(out)
    if out.exists() and not overwrite:
        raise UserError("the output exists; use --overwrite to replace it", out)
    lightning.seed_everything(config.seed, verbose=False)
    protocol = load_protocol(corpus_dir)
    sample_rate = corpus_sample_rate(corpus_dir)
    epochs = _EpochLog()
    with tempfile.TemporaryDirectory(prefix="audiossl-seg-") as scratch:
        task = SpeakerDiarization(
            protocol,
            cache=str(Path(scratch) / "task.npz"),
            duration=config.duration,
            max_speakers_per_chunk=config.max_speakers_per_chunk,
            max_speakers_per_frame=config.max_speakers_per_frame,
            batch_size=config.batch_size,
            num_workers=0,
        )
        model = _pyannet(config, sample_rate, task)
        model.configure_optimizers = lambda: torch.optim.Adam(model.parameters(), lr=config.lr)
        with warnings.catch_warnings(), _quiet_lightning():
            for message in (
                ".*does not have many workers.*",
                ".*no logger configured.*",
                ".*IterableDataset.*",
                ".*target_rate is required.*",
            ):
                warnings.filterwarnings("ignore", message=message)
            trainer = lightning.Trainer(
                max_epochs=config.epochs,
                accelerator="gpu" if device.startswith("cuda") else "cpu",
                devices=1,
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
                num_sanity_val_steps=0,
                callbacks=[epochs.callback],
                default_root_dir=scratch,
            )
            trainer.fit(model)
    save_segmentation(model.cpu(), config, out)
    summary = {"path": str(out), "config": asdict(config), "sample_rate": sample_rate, "epochs": epochs.rows}
    with atomic_write(out.with_name(out.name + ".json")) as handle:
        json.dump(summary, handle, indent=2)
    return summary


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Lightning's banners (accelerators found, tips) are noise for a command-line tool."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _specifications_dict(specifications: Any) -> dict[str, Any]:
    return {
        "problem": specifications.problem.name,
        "resolution": specifications.resolution.name,
        "duration": float(specifications.duration),
        "min_duration": specifications.min_duration,
        "warm_up": list(specifications.warm_up) if specifications.warm_up is not None else None,
        "classes": list(specifications.classes),
        "powerset_max_classes": specifications.powerset_max_classes,
        "permutation_invariant": bool(specifications.permutation_invariant),
    }


def save_segmentation(model: Any, config: SegmentationConfig, out: str | Path) -> Path:
    """Write a trained PyanNet as plain data, atomically: see the module doc.

    A path ending in ``.safetensors`` gets a safetensors file (the weights; the rest as JSON in
    its metadata); any other path a ``torch.save`` of plain data (``torch.load(weights_only=True)``).
    """
    header = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "config": asdict(config),
        "sample_rate": int(model.hparams.sample_rate),
        "specifications": _specifications_dict(model.specifications),
    }
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(out) as tmp:
        if Path(out).suffix == SAFETENSORS:
            from safetensors.torch import save_file

            save_file(weights, str(tmp), metadata={FORMAT: json.dumps(header)})
        else:
            torch.save({**header, "state_dict": weights}, tmp)
    return Path(out)


SAFETENSORS = ".safetensors"
#: The file of a pyannote model directory (pyannote's ``AssetFileName.Model``).
PYANNOTE_MODEL_FILE = "pytorch_model.bin"
#: Where pyannote's segmentation models live; the classes of it that :func:`load_segmentation` rebuilds.
PYANNOTE_ARCHITECTURES = {("pyannote.audio.models.segmentation.PyanNet", "PyanNet")}
#: Hyper-parameters of PyanNet's constructor that a checkpoint may set (all plain numbers and dicts).
PYANNET_HPARAMS = ("sample_rate", "num_channels", "sincnet", "lstm", "linear")


def load_segmentation(path: str | Path):
    """A segmentation :class:`~pyannote.audio.core.model.Model` in eval mode from a local file (see the module doc).

    ``path``: a file written by :func:`save_segmentation` (``.pt`` or ``.safetensors``), a pyannote
    checkpoint (``pytorch_model.bin``, Lightning ``.ckpt``) or a pyannote model directory. Only
    weights are read; anything else is a :class:`~audiossl.errors.DataError` naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise UserError("segmentation model not found (only local paths are accepted: nothing is downloaded)", path)
    if path.is_dir():
        if not (path / PYANNOTE_MODEL_FILE).is_file():
            raise DataError(f"a directory without {PYANNOTE_MODEL_FILE}: not a pyannote model directory", path)
        path = path / PYANNOTE_MODEL_FILE
    if path.suffix == SAFETENSORS:
        return _load_safetensors(path)
    state = read_weights_only(path, what="a segmentation model", safe_globals=_pyannote_safe_globals())
    if isinstance(state, dict) and state.get("format") == FORMAT:
        return _build(state, state.get("state_dict"), path)
    if isinstance(state, dict) and isinstance(state.get("pyannote.audio"), dict) and "state_dict" in state:
        return _build_pyannote(state, path)
    raise DataError(
        f"not a segmentation model: neither {FORMAT} (train-segmentation) nor a pyannote checkpoint "
        "(a dict with 'pyannote.audio' and 'state_dict')",
        path,
    )


class _Inert:
    """Stands in for a class an old checkpoint names but nothing here uses (Lightning callbacks): builds nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


#: Lightning callbacks whose classes old pyannote checkpoints name (as keys of their ``callbacks`` state).
_CALLBACKS = (
    "early_stopping.EarlyStopping",
    "model_checkpoint.ModelCheckpoint",
    "lr_monitor.LearningRateMonitor",
    "progress.tqdm_progress.TQDMProgressBar",
    "progress.rich_progress.RichProgressBar",
    "model_summary.ModelSummary",
    "rich_model_summary.RichModelSummary",
    "stochastic_weight_avg.StochasticWeightAveraging",
)


def _pyannote_safe_globals() -> list:
    """What a pyannote checkpoint may hold beyond plain data: pure-data classes, and inert stand-ins.

    ``Specifications`` is a dataclass of numbers, strings and the two enums (rebuilt from the file
    by setting its fields: no code of the file's choosing runs); torch's version string is a
    ``str``. The Lightning callback classes are replaced by :class:`_Inert`, never imported.
    """
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from torch.torch_version import TorchVersion

    inert = [
        (_Inert, f"{package}.callbacks.{name}")
        for package in ("pytorch_lightning", "lightning.pytorch")
        for name in _CALLBACKS
    ]
    return [Specifications, Problem, Resolution, TorchVersion, *inert]


def _load_safetensors(path: Path):
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            weights = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 - safe_open has no iter
    except Exception as error:  # safetensors raises its own error types for a foreign or truncated file
        log.debug("%s: safetensors: %s", path, error)
        raise DataError(
            "not a segmentation model: an unreadable safetensors file (truncated or corrupt?)", path
        ) from None
    try:
        header = json.loads(metadata[FORMAT])
    except (KeyError, ValueError):
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise DataError(f"not a segmentation model: a safetensors file without {FORMAT} metadata", path)
    return _build(header, weights, path)


def _specifications(spec: Any, path: Path):
    """pyannote ``Specifications`` from our dict of plain values (a DataError when it is not one)."""
    from pyannote.audio.core.task import Problem, Resolution, Specifications

    try:
        spec = dict(spec)
        spec["problem"] = Problem[spec["problem"]]
        spec["resolution"] = Resolution[spec["resolution"]]
        spec["warm_up"] = tuple(spec["warm_up"]) if spec["warm_up"] is not None else None
        return Specifications(**spec)
    except (KeyError, TypeError, ValueError) as error:
        raise DataError(f"the stored task specifications are not valid: {error!r}", path) from None


def _build(state: dict[str, Any], weights: Any, path: Path):
    """PyanNet from our header (config, sample rate, specifications) and ``weights``."""
    if state.get("version") != FORMAT_VERSION:
        raise DataError(f"segmentation file version {state.get('version')}, this plugin reads {FORMAT_VERSION}", path)
    try:
        config = from_dict(SegmentationConfig, state["config"])
        sample_rate = int(state["sample_rate"])
    except (KeyError, TypeError, ValueError) as error:
        raise DataError(f"the stored configuration is not valid: {error}", path) from None
    model = _pyannet(config, sample_rate)
    model.specifications = _specifications(state.get("specifications"), path)
    model.build()
    return _load_weights(model, weights, path, strict=True)


def _build_pyannote(state: dict[str, Any], path: Path):
    """PyanNet from a pyannote checkpoint read as data: its hyper-parameters, specifications and weights."""
    from pyannote.audio.core.task import Specifications
    from pyannote.audio.models.segmentation import PyanNet

    info = state["pyannote.audio"]
    architecture = info.get("architecture") or {}
    found = (architecture.get("module"), architecture.get("class"))
    if found not in PYANNOTE_ARCHITECTURES:
        raise DataError(
            f"a pyannote checkpoint of {found[0]}.{found[1]}: audiossl rebuilds only PyanNet segmentation models "
            "(it never imports a class a file names)",
            path,
        )
    specifications = info.get("specifications")
    if not isinstance(specifications, Specifications):
        raise DataError("a pyannote checkpoint without task specifications: not a trained segmentation model", path)
    hparams = state.get("hyper_parameters") or {}
    if not isinstance(hparams, dict):
        raise DataError("a pyannote checkpoint whose hyper_parameters are not a dict", path)
    kwargs = {key: hparams[key] for key in PYANNET_HPARAMS if key in hparams}
    if not all(_plain(value) for value in kwargs.values()):
        raise DataError(f"a pyannote checkpoint with non-numeric hyper-parameters: {sorted(kwargs)}", path)
    try:
        model = PyanNet(**kwargs)
    except (TypeError, ValueError, AssertionError) as error:
        raise DataError(f"the stored PyanNet hyper-parameters are not valid: {error!r}", path) from None
    model.specifications = specifications
    model.build()
    # pyannote loads these non-strictly: a task-specific loss may have saved weights of its own
    return _load_weights(model, state["state_dict"], path, strict=False)


def _plain(value: Any) -> bool:
    """Numbers, strings, booleans, None, and dicts/lists of them: what PyanNet's constructor takes."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return False


def _load_weights(model: Any, weights: Any, path: Path, *, strict: bool):
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise DataError("the segmentation weights are not a dict of tensors", path)
    try:
        missing, unexpected = model.load_state_dict(weights, strict=False)
    except RuntimeError as error:  # shape mismatches
        raise DataError(f"segmentation weights do not fit the model: {error}", path) from None
    if missing or (strict and unexpected):
        shown = ", ".join(sorted(missing)[:5]) if missing else ", ".join(sorted(unexpected)[:5])
        which = "missing" if missing else "unexpected"
        raise DataError(f"segmentation weights do not fit the model ({which}: {shown})", path)
    if unexpected:
        log.debug("%s: ignoring %d weights not in PyanNet: %s", path, len(unexpected), sorted(unexpected)[:5])
    return model.eval()
