"""What TTS and speech-to-speech share: the speech decoder's loss, speaker tables, length checks, vocoding.

The speech decoder is SpeechT5's (:class:`audiossl.models.speecht5.SpeechT5Backbone`): a
Transformer decoder over log-mel frames (pre-net with the speaker embedding), a post-net
predicting ``r`` frames and their stop logits per step, and a convolutional refiner. Its loss
is SpeechT5's fine-tuning loss: L1 of the frames before and after the refiner plus a binary
cross-entropy on the stop logits (the last frame is the one positive; ``stop_weight`` weights
it, as ESPnet's ``bce_pos_weight``), all over valid frames only.

Vocoding uses the vc plugin's public API: Griffin-Lim on the log-mel
(:class:`audiossl_vc.mel.GriffinLimSynth`) or a trained vc vocoder run whose features are
these log-mels (``audiossl tts train-vocoder``: HiFi-GAN or the mel regressor + Griffin-Lim).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from audiossl.errors import ConfigError, DataError
from audiossl.models.speecht5 import MelOutput, MelTargetConfig
from audiossl.models.speecht5.nets import LOG_FLOOR
from audiossl.nn.masking import lengths_to_mask
from audiossl.nn.outputs import LossOutput


def speech_decoder_loss(
    out: MelOutput, target: torch.Tensor, frame_lengths: torch.Tensor, stop_weight: float = 5.0
) -> LossOutput:
    """L1 before + L1 after the refiner + stop BCE, over the valid frames of ``target`` (B, F, n_mels)."""
    frames = target.shape[1]
    valid = lengths_to_mask(frame_lengths.to(target.device), frames)  # (B, F)
    before, after, stop = out.before[:, :frames].float(), out.after[:, :frames].float(), out.stop_logits[:, :frames]
    weight = valid.unsqueeze(-1).float()
    count = weight.sum() * target.shape[2]
    l1_before = ((before - target).abs() * weight).sum() / count
    l1_after = ((after - target).abs() * weight).sum() / count
    last = F.one_hot((frame_lengths - 1).clamp_min(0).to(target.device), frames).float()  # (B, F)
    bce = F.binary_cross_entropy_with_logits(
        stop.float(), last, pos_weight=torch.tensor(stop_weight, device=target.device), reduction="none"
    )
    stop_loss = (bce * valid).sum() / valid.sum()
    total = l1_before + l1_after + stop_loss
    parts = {"l1_before": l1_before.detach(), "l1_after": l1_after.detach(), "stop": stop_loss.detach()}
    return LossOutput(total=total, parts=parts)


def check_frames(
    ids: Sequence[str], frames: Sequence[int], limit: int, where: str | Path | None = None, what: str = "utterance"
) -> None:
    """DataError naming every item whose mel frames exceed the decoder's ``limit``."""
    too_long = [(utt, n) for utt, n in zip(ids, frames, strict=True) if n > limit]
    if too_long:
        shown = ", ".join(f"{utt!r} ({n} frames)" for utt, n in too_long[:5])
        more = f" and {len(too_long) - 5} more" if len(too_long) > 5 else ""
        raise DataError(
            f"{len(too_long)} {what}(s) are longer than the speech decoder's maximum of {limit} mel frames: "
            f"{shown}{more}; raise --max-frames or leave them out",
            where,
        )


def speaker_index(speakers: Sequence[str], speaker: str, run_dir: str | Path | None = None) -> int:
    """Row of ``speaker`` in a speaker table; a clear error listing the known speakers otherwise."""
    try:
        return list(speakers).index(speaker)
    except ValueError:
        shown = ", ".join(list(speakers)[:20]) + (" ..." if len(speakers) > 20 else "")
        raise ConfigError(f"unknown speaker {speaker!r}; this run knows: {shown}", run_dir) from None


class Vocoder:
    """Log-mel (F, n_mels) -> waveform (F x hop,): Griffin-Lim, or a vc vocoder run trained on these log-mels."""

    def __init__(self, mel: MelTargetConfig, run: str | Path | None = None, griffin_lim_iters: int = 32):
        from audiossl_vc.mel import GriffinLimSynth, MelConfig

        self.mel = mel
        self.network = None
        if run is not None:
            from audiossl_vc.vocoder import load_vocoder

            self.network = load_vocoder(run)
            spec = self.network.spec
            if spec.in_dim != mel.n_mels or spec.hop != mel.hop_length or spec.sample_rate != mel.sample_rate:
                raise ConfigError(
                    f"vocoder {run} reads {spec.in_dim}-wide frames every {spec.hop} samples at {spec.sample_rate} Hz, "
                    f"but this model makes {mel.n_mels}-band log-mels every {mel.hop_length} samples at "
                    f"{mel.sample_rate} Hz (train one with `audiossl tts train-vocoder`)"
                )
            self.name = f"vc:{spec.kind}"
        else:
            config = MelConfig(
                sample_rate=mel.sample_rate,
                feature_hop=mel.hop_length,
                upsample=1,
                n_fft=mel.n_fft,
                n_mels=mel.n_mels,
            )
            self.griffin_lim = GriffinLimSynth(config, griffin_lim_iters)
            self.name = "griffin-lim"

    @torch.no_grad()
    def __call__(self, log_mel: torch.Tensor) -> torch.Tensor:
        log_mel = log_mel.detach().float().cpu()
        frames = log_mel.shape[0]
        shortest = self.mel.n_fft // self.mel.hop_length + 1  # Griffin-Lim's centred STFT needs > n_fft / 2 samples
        if frames < shortest:  # an utterance the decoder stopped early: pad with silence, cut after
            silence = torch.full((shortest - frames, log_mel.shape[1]), math.log(LOG_FLOOR))
            return self(torch.cat([log_mel, silence]))[: frames * self.mel.hop_length]
        if self.network is not None:
            wave, _ = self.network(log_mel.unsqueeze(0), torch.tensor([log_mel.shape[0]]))
            return wave[0]
        return self.griffin_lim(log_mel)
