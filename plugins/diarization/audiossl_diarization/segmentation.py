"""A pyannote segmentation model (PyanNet: SincNet, LSTM, powerset classes) trained locally, without the hub.

pyannote's ``SpeakerDiarization`` task (Bredin & Laurent, Interspeech 2021; powerset loss: Plaquet
& Bredin, Interspeech 2023) draws random chunks of the corpus's training recordings and learns,
frame by frame, which of up to ``max_speakers_per_chunk`` local speakers are active. Lightning
runs the training on the CPU or a GPU.

The model is saved in our own file (``torch.save`` of plain data: hyperparameters, the task's
specifications as numbers and strings, and the weights), so loading it never unpickles code,
unlike a Lightning checkpoint. :func:`load_segmentation` also opens pyannote's own local
checkpoints (``pytorch_model.bin`` or a Lightning ``.ckpt``), through pyannote, which does unpickle
them: use that only for files you trust. Hub names are refused: nothing is downloaded.
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
from audiossl.fileio import atomic_path, atomic_write

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
    """Write a trained PyanNet as plain data (readable with ``torch.load(weights_only=True)``), atomically."""
    state = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "config": asdict(config),
        "sample_rate": int(model.hparams.sample_rate),
        "specifications": _specifications_dict(model.specifications),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    with atomic_path(out) as tmp:
        torch.save(state, tmp)
    return Path(out)


def load_segmentation(path: str | Path):
    """A segmentation :class:`~pyannote.audio.core.model.Model` in eval mode from a local file (see the module doc)."""
    from pyannote.audio.core.task import Problem, Resolution, Specifications

    path = Path(path)
    if not path.exists():
        raise UserError("segmentation model not found (only local paths are accepted: nothing is downloaded)", path)
    state = None
    if path.is_file():
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # not plain data: maybe a pyannote/Lightning checkpoint
            state = None
    if not (isinstance(state, dict) and state.get("format") == FORMAT):
        return _load_pyannote_checkpoint(path)
    if state.get("version") != FORMAT_VERSION:
        raise DataError(f"segmentation file version {state.get('version')}, this plugin reads {FORMAT_VERSION}", path)

    config = from_dict(SegmentationConfig, state["config"])
    model = _pyannet(config, int(state["sample_rate"]))
    spec = dict(state["specifications"])
    spec["problem"] = Problem[spec["problem"]]
    spec["resolution"] = Resolution[spec["resolution"]]
    spec["warm_up"] = tuple(spec["warm_up"]) if spec["warm_up"] is not None else None
    model.specifications = Specifications(**spec)
    model.build()
    try:
        model.load_state_dict(state["state_dict"])
    except RuntimeError as error:
        raise DataError(f"segmentation weights do not fit the model: {error}", path) from None
    return model.eval()


def _load_pyannote_checkpoint(path: Path):
    from pyannote.audio import Model

    try:
        model = Model.from_pretrained(str(path), strict=False)
    except Exception as error:  # pyannote raises many kinds; all mean "not a segmentation checkpoint"
        raise DataError(
            f"not a segmentation model (neither {FORMAT} nor a pyannote checkpoint): {type(error).__name__}: {error}",
            path,
        ) from None
    if model is None:
        raise DataError("not a segmentation model", path)
    return model.eval()
