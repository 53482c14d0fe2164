"""The enhancement (``se``) and separation (``ss``) tasks: mask heads trained on magnitude spectra.

A pair / mixture data dir (made by :mod:`audiossl_enhance.mixtures`) has the input audio in
``wav.scp`` and the target sources as wav paths in label tables: ``utt2clean`` for
enhancement, ``utt2src1`` and ``utt2src2`` for separation, every file at the input's sample
rate and length. The head reads upstream features aligned to STFT frames and predicts one
mask per source; the loss is the L1 (or MSE) distance between masked input magnitudes and
target magnitudes over valid cells. Separation matches estimates to sources per utterance by
the permutation with the least loss (utterance-level PIT, Kolbaek et al. 2017).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, ClassVar

import torch

from audiossl.audio.io import audio_info, load_audio
from audiossl.data.dataset import AudioDataset, Batch
from audiossl.data.kaldi import read_entries
from audiossl.downstream.task import DownstreamTask, TaskState, check_labels, label_file
from audiossl.errors import ConfigError, DataError
from audiossl.nn.outputs import LossOutput
from audiossl_enhance.head import ACTIVATIONS, MaskHead
from audiossl_enhance.metrics import PESQ_MIN_SECONDS, pit_loss
from audiossl_enhance.spectral import StftConfig, align_frames, batch_spectra, frame_mask

LOSSES = ("l1", "mse")
#: Target waveforms kept in memory per process (a small corpus is read from disk once).
CACHE_SIZE = 4096


class MaskTask(DownstreamTask):
    """Shared body of :class:`EnhancementTask` and :class:`SeparationTask` (``labels`` name the sources)."""

    level: ClassVar[str] = "frame"
    permutation_invariant: ClassVar[bool] = False

    def __init__(
        self,
        hidden_dim: int = 256,
        num_layers: int = 2,
        dropout: float = 0.1,
        activation: str = "sigmoid",
        loss: str = "l1",
        n_fft: int = 512,
        win_length: int = 400,
        hop_length: int = 160,
        min_seconds: float = PESQ_MIN_SECONDS,
        plots: int = 3,
    ):
        if loss not in LOSSES:
            raise ConfigError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        if activation not in ACTIVATIONS:
            raise ConfigError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        if hidden_dim < 1 or num_layers < 1 or not 0.0 <= dropout < 1.0 or plots < 0 or min_seconds < 0:
            raise ConfigError("need hidden_dim >= 1, num_layers >= 1, 0 <= dropout < 1, plots >= 0, min_seconds >= 0")
        self.hidden_dim, self.num_layers, self.dropout = hidden_dim, num_layers, dropout
        self.activation, self.loss_name, self.min_seconds, self.plots = activation, loss, min_seconds, plots
        self.stft = StftConfig(n_fft=n_fft, win_length=win_length, hop_length=hop_length)
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    @property
    def sources(self) -> int:
        return len(self.labels)

    def options(self) -> dict[str, Any]:
        return {
            "hidden_dim": self.hidden_dim,
            "num_layers": self.num_layers,
            "dropout": self.dropout,
            "activation": self.activation,
            "loss": self.loss_name,
            "n_fft": self.stft.n_fft,
            "win_length": self.stft.win_length,
            "hop_length": self.stft.hop_length,
            "min_seconds": self.min_seconds,
            "plots": self.plots,
        }

    # ------------------------------------------------------------------ data
    def prepare(self, train_dir: Path, out_dir: Path) -> TaskState:
        return {"sources": list(self.labels), "sample_rate": data_rate(train_dir)}

    def check_data(self, data_dir: Path, state: TaskState) -> None:
        """Labels complete, target files present at the input's rate and length, no input too short."""
        data = check_labels(data_dir, self.labels)
        durations = AudioDataset(data, sample_rate=16000).durations
        wav_scp = Path(data_dir) / "wav.scp"
        lines = {entry.key: entry.line for entry in read_entries(wav_scp)}
        for utt, seconds in zip(data.utterance_ids, durations, strict=True):
            if seconds < self.min_seconds:
                raise DataError(
                    f"utterance {utt!r} lasts {seconds:.3f} s; the {self.name} task needs at least "
                    f"{self.min_seconds} s (PESQ's floor; --min-seconds)",
                    wav_scp,
                    lines.get(utt),
                )
        for label in self.labels:
            table = label_file(data_dir, label)
            for entry in read_entries(table):
                if not Path(entry.value).is_file():
                    raise DataError(f"{entry.key}: target file {entry.value!r} not found", table, entry.line)
                frames, rate, _ = audio_info(entry.value)
                info = data.wav_scp.get(entry.key)
                if info is not None and Path(info).is_file():
                    in_frames, in_rate, _ = audio_info(info)
                    if (frames, rate) != (in_frames, in_rate):
                        raise DataError(
                            f"{entry.key}: target {entry.value} has {frames} samples at {rate} Hz but the input "
                            f"{info} has {in_frames} at {in_rate} Hz (clean and noisy must match)",
                            table,
                            entry.line,
                        )

    def make_head(self, dim: int, state: TaskState) -> MaskHead:
        return MaskHead(
            dim,
            self.stft.bins,
            sources=self.sources,
            hidden_dim=self.hidden_dim,
            num_layers=self.num_layers,
            dropout=self.dropout,
            activation=self.activation,
        )

    def targets(self, batch: Batch, sample_rate: int | None = None) -> list[torch.Tensor]:
        """Each item's target waveforms (K, T_b) on the batch's device, length-checked against the input.

        ``sample_rate`` is the rate the batch was loaded at (the upstream's): the targets are
        resampled to it, as the inputs were, so pairs written at another rate train and score alike.
        """
        out = []
        for b, utt in enumerate(batch.ids):
            length = int(batch.lengths[b])
            waves = []
            for label in self.labels:
                path = batch.labels[label][b]
                wave = self._load(path, sample_rate)
                if wave.numel() != length:
                    raise DataError(
                        f"{utt}: target {path} has {wave.numel()} samples at {sample_rate or 'its own'} Hz but the "
                        f"input has {length} (clean and noisy must match)",
                        path,
                    )
                waves.append(wave)
            out.append(torch.stack(waves).to(batch.waveforms.device))
        return out

    def _load(self, path: str, sample_rate: int | None) -> torch.Tensor:
        key = f"{path}@{sample_rate}"
        if key not in self._cache:
            self._cache[key] = load_audio(path, sample_rate)[0]
            if len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return self._cache[key]

    # ------------------------------------------------------------------ model
    def masks(
        self, head: MaskHead, hidden: torch.Tensor, lengths: torch.Tensor, waveforms: torch.Tensor, wave_lengths
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Input spectra (B, N, F) complex, frames (B,), masks (B, K, N, F)."""
        spec, frames = batch_spectra(waveforms, wave_lengths, self.stft)
        features = align_frames(hidden.float(), lengths, frames)  # (B, N, D)
        return spec, frames, head(features, frames)

    def pairwise(self, estimates: torch.Tensor, targets: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """(B, K, N, F) estimated and target magnitudes -> (B, K_est, K_ref) mean distance over valid cells."""
        diff = estimates[:, :, None] - targets[:, None, :]  # (B, K, K, N, F)
        cost = diff.abs() if self.loss_name == "l1" else diff.square()
        valid = frame_mask(frames, estimates.shape[2]).float()  # (B, N)
        total = (cost.sum(-1) * valid[:, None, None, :]).sum(-1)  # (B, K, K)
        return total / (frames.float() * estimates.shape[-1])[:, None, None]

    def loss(
        self, head: MaskHead, hidden: torch.Tensor, lengths: torch.Tensor, batch: Batch, state: TaskState
    ) -> LossOutput:
        spec, frames, masks = self.masks(head, hidden, lengths, batch.waveforms, batch.lengths)
        estimates = masks * spec.abs()[:, None]  # (B, K, N, F)
        target_specs = torch.zeros_like(estimates)
        rate = (getattr(self, "upstream_info", None) or {}).get("sample_rate")  # set by the trainer
        for b, waves in enumerate(self.targets(batch, sample_rate=rate)):
            mags = batch_spectra(waves, torch.full((waves.shape[0],), waves.shape[1]), self.stft)[0].abs()
            target_specs[b, :, : mags.shape[1]] = mags
        pairwise = self.pairwise(estimates, target_specs, frames)  # (B, K, K)
        if self.permutation_invariant:
            per_item, _ = pit_loss(pairwise)
        else:
            per_item = torch.diagonal(pairwise, dim1=1, dim2=2).mean(-1)
        total = per_item.mean()
        return LossOutput(total=total, parts={self.loss_name: total.detach()})

    def evaluate(
        self, head: MaskHead, upstream: torch.nn.Module, data_dir: Path, state: TaskState, out_dir: Path
    ) -> dict[str, float]:
        from audiossl_enhance.evaluate import evaluate_task  # matplotlib, pesq, pystoi: only when scoring

        return evaluate_task(self, head, upstream, Path(data_dir), Path(out_dir))


class EnhancementTask(MaskTask):
    """Speech enhancement: one mask over the noisy magnitude; targets ``utt2clean``."""

    name = "se"
    labels = ("clean",)


class SeparationTask(MaskTask):
    """Two-speaker separation: two masks over the mixture magnitude, PIT; targets ``utt2src1``, ``utt2src2``."""

    name = "ss"
    labels = ("src1", "src2")
    permutation_invariant = True


def data_rate(data_dir: str | Path) -> int:
    """Sample rate of the first recording of a data dir written by this plugin (plain wav paths)."""
    table = Path(data_dir) / "wav.scp"
    entries = read_entries(table)
    if not entries:
        raise DataError("data dir has no utterances (wav.scp is empty)", table)
    first = entries[0]
    if not Path(first.value).is_file():
        raise DataError(
            f"{first.key}: expected a wav file path (make pairs/mixtures with `audiossl se make-pairs` or "
            "`audiossl ss make-mixtures`)",
            table,
            first.line,
        )
    return int(audio_info(first.value)[1])
