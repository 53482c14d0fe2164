"""Speech-to-speech voice conversion: any upstream's frames -> SpeechT5's speech decoder -> a speaker's log-mel.

SpeechT5's VC fine-tuning (Ao et al. 2022) encodes the source speech and lets the speech decoder
generate the target speaker's log-mel, conditioned on the target's speaker embedding. Here the
encoder is any audiossl upstream (frozen or fine-tuned, the SUPERB layer mix, like every
plugin) and the decoder side is :class:`audiossl.models.speecht5.SpeechT5Backbone` (mel pre-net
with a speaker table, decoder cross-attending to the frames, post-net, refiner) of the
upstream's width. ``init`` starts the decoder side from a speecht5 pretraining run, whose
decoder learned to rebuild log-mels from that encoder's output.

Training needs no parallel data: the decoder rebuilds each utterance's own log-mel from its
frames, given its speaker's embedding; conversion swaps the embedding for another speaker's.
How much of the voice follows the embedding rather than the frames is what ``evaluate``
measures (speaker similarity to the target, by an sv run).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from audiossl.config import from_dict, to_dict
from audiossl.data.dataset import AudioDataset
from audiossl.data.kaldi import read_table
from audiossl.downstream.task import DownstreamTask, TaskState, check_labels, eval_batches
from audiossl.errors import ConfigError
from audiossl.models.speecht5 import SpeechT5Backbone, SpeechT5BackboneConfig, load_speecht5
from audiossl.nn.outputs import LossOutput
from audiossl_speecht5.metrics import corpus_mcd, mel_cepstrum
from audiossl_speecht5.speech import check_frames, speaker_index, speech_decoder_loss

logger = logging.getLogger(__name__)


class S2STask(DownstreamTask):
    """Rebuild each utterance's log-mel from the upstream's frames and its speaker's embedding."""

    name = "s2s"
    labels = ("spk",)
    level = "frame"

    def __init__(
        self,
        decoder_layers: int = 2,
        reduction: int = 2,
        speaker_dim: int = 64,
        max_frames: int = 1000,
        stop_weight: float = 5.0,
        dropout: float = 0.1,
        init: str | None = None,
    ):
        if max_frames < 1 or reduction < 1 or decoder_layers < 1:
            raise ConfigError("max_frames, reduction and decoder_layers must be >= 1")
        self.decoder_layers, self.reduction, self.speaker_dim = decoder_layers, reduction, speaker_dim
        self.max_frames, self.stop_weight, self.dropout, self.init = max_frames, stop_weight, dropout, init

    def options(self) -> dict[str, Any]:
        return {
            "decoder_layers": self.decoder_layers,
            "reduction": self.reduction,
            "speaker_dim": self.speaker_dim,
            "max_frames": self.max_frames,
            "stop_weight": self.stop_weight,
            "dropout": self.dropout,
            "init": self.init,
        }

    def backbone_config(self, num_speakers: int) -> SpeechT5BackboneConfig:
        if self.init is not None:
            config = load_speecht5(self.init).backbone.config
            config.num_speakers = num_speakers
            return config
        config = SpeechT5BackboneConfig(
            decoder_layers=self.decoder_layers,
            dropout=self.dropout,
            max_length=-(-self.max_frames // self.reduction) + 1,
            num_speakers=num_speakers,
        )
        config.speech.reduction = self.reduction
        config.speech.speaker_dim = self.speaker_dim
        return config

    def prepare(self, train_dir: Path, out_dir: Path) -> TaskState:
        speakers = sorted(set(read_table(Path(train_dir) / "utt2spk").values()))
        return {"speakers": speakers, "backbone": to_dict(self.backbone_config(len(speakers)))}

    def check_data(self, data_dir: Path, state: TaskState) -> None:
        """Labels present; every utterance within the decoder's frames (DataError naming the long ones)."""
        check_labels(data_dir, self.labels)
        config = from_dict(SpeechT5BackboneConfig, state["backbone"])
        dataset = AudioDataset(data_dir, sample_rate=config.mel.sample_rate)
        frames = [int(round(d * config.mel.sample_rate)) // config.mel.hop_length for d in dataset.durations]
        limit = min(self.max_frames, (config.max_length - 1) * config.speech.reduction)
        check_frames(dataset.ids, frames, limit, Path(data_dir) / "wav.scp")

    def make_head(self, dim: int, state: TaskState) -> nn.Module:
        config = from_dict(SpeechT5BackboneConfig, state["backbone"])
        head = SpeechT5Backbone(config, dim, None)
        if self.init is not None:
            pretrained = load_speecht5(self.init).backbone
            if pretrained.dim != dim:
                raise ConfigError(f"--init decoder is {pretrained.dim} wide but the upstream gives {dim}", self.init)
            text_parts = ("embedding", "output_bias", "text_prenet", "speakers", "_extra_state")  # tokenizer: text only
            weights = {k: v for k, v in pretrained.state_dict().items() if not k.startswith(text_parts)}
            head.load_state_dict(weights, strict=False)
        head.speaker_names = list(state["speakers"])
        return head

    def loss(self, head: nn.Module, hidden: torch.Tensor, lengths: torch.Tensor, batch, state: TaskState) -> LossOutput:
        target, frame_lengths = head.mel(batch.waveforms, batch.lengths)  # (B, F, n_mels), (B,)
        speakers = torch.tensor([state["speakers"].index(s) for s in batch.labels["spk"]], device=hidden.device)
        out = head.decode_speech(target, frame_lengths, hidden, lengths, speakers)
        return speech_decoder_loss(out, target, frame_lengths, self.stop_weight)

    def evaluate(
        self, head: nn.Module, upstream: nn.Module, data_dir: Path, state: TaskState, out_dir: Path
    ) -> dict[str, float]:
        """Reconstruction MCD: every utterance regenerated in its own voice (speakers the run knows)."""
        utt2spk = read_table(Path(data_dir) / "utt2spk")
        pairs = []
        for batch, hidden, lengths in eval_batches(upstream, data_dir, ()):
            known = [utt2spk[u] in state["speakers"] for u in batch.ids]
            names = [utt2spk[u] if k else state["speakers"][0] for u, k in zip(batch.ids, known, strict=True)]
            rows = target_rows(state["speakers"], names)
            mels, frames = convert_frames(head, hidden, lengths, rows.to(hidden.device), self.max_frames)
            target, target_frames = head.mel(batch.waveforms.to(hidden.device), batch.lengths.to(hidden.device))
            for i, ok in enumerate(known):
                if ok:
                    reference = analysis_of(target[i, : int(target_frames[i])])
                    pairs.append((reference, analysis_of(mels[i, : int(frames[i])])))
        if not pairs:
            raise ConfigError(
                "no utterance of a speaker this run knows: nothing to reconstruct", Path(data_dir) / "utt2spk"
            )
        return corpus_mcd(pairs).as_dict()


def analysis_of(log_mel: torch.Tensor):
    """Mel cepstra of a log-mel (F, n_mels) for MCD (the decoder's own mel, no vocoder in between)."""
    return mel_cepstrum(log_mel.detach().float().cpu().numpy())


@torch.no_grad()
def convert_frames(
    head: SpeechT5Backbone, hidden: torch.Tensor, lengths: torch.Tensor, speakers: torch.Tensor, max_frames: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-mels (B, F, n_mels) and lengths (B,) from frames (B, S, D) in the voices of table rows ``speakers``."""
    limit = min(max_frames, (head.config.max_length - 1) * head.config.speech.reduction)
    return head.generate_speech(hidden, lengths, speakers, max_frames=limit)


def target_rows(names: list[str], speakers: list[str], run_dir=None) -> torch.Tensor:
    """Table rows of speaker names (unknown names are an error listing the known ones)."""
    return torch.tensor([speaker_index(names, s, run_dir) for s in speakers])
