"""Convert an utterance to a target voice: encode, match against the target pool, vocode.

``audiossl vc convert SRC.wav --target DIR_OR_WAVS --model CKPT --vocoder RUN -o OUT.wav``.
The vocoder decides which features are matched (its layer or learned mix), so the matched frames
are exactly what it was trained to render. A ``neucosvc`` vocoder (NeuCoSVC, Sha et al. 2023)
renders the matched frames with the *source's* F0 -- moved by a key shift into the target's
register (``auto``) or by a given number of semitones -- and the source's loudness.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import soundfile
import torch

from audiossl.audio.io import load_audio
from audiossl.errors import ConfigError, DataError
from audiossl.fileio import atomic_path
from audiossl.models import PretrainedEncoder, load_pretrained
from audiossl_vc.features import LayerSpec, encode_utterance, feature_dim, frame_hop
from audiossl_vc.matching import knn_match
from audiossl_vc.pitch import PitchTrack, analyse, key_shift
from audiossl_vc.pool import TargetPool, build_pool, target_source
from audiossl_vc.vocoder import Vocoder, load_vocoder


@dataclass
class Rendered:
    """A conversion: the waveform (N x hop,), the key shift applied (semitones) and the source's pitch track."""

    waveform: torch.Tensor
    key_shift: float
    pitch: PitchTrack | None


@dataclass
class Converter:
    """A pretrained encoder and a vocoder trained on its features: the two halves of conversion."""

    model: PretrainedEncoder
    vocoder: Vocoder

    @staticmethod
    def load(model_path: str | Path, vocoder_run: str | Path, layer: str | None = None) -> Converter:
        """Load both and check they fit (rate, hop, width; ``layer`` if given must be the vocoder's)."""
        model = load_pretrained(model_path)
        vocoder = load_vocoder(vocoder_run)
        spec = vocoder.spec
        found = (model.sample_rate, frame_hop(model), feature_dim(model))
        if found != (spec.sample_rate, spec.hop, spec.in_dim):
            raise ConfigError(
                f"the vocoder was trained on features of {spec.encoder} (rate {spec.sample_rate}, hop {spec.hop}, "
                f"width {spec.in_dim}); this encoder gives rate {found[0]}, hop {found[1]}, width {found[2]}",
                vocoder_run,
            )
        if layer is not None:
            wanted = LayerSpec.parse(layer, model.encoder.num_layers)
            if wanted != spec.layer_spec:
                raise ConfigError(
                    f"the vocoder renders layer {spec.layer_spec} features, not layer {wanted}; "
                    "train a vocoder on that layer (audiossl vc train-vocoder --layer)",
                    vocoder_run,
                )
        return Converter(model, vocoder)

    @property
    def sample_rate(self) -> int:
        return self.model.sample_rate

    def features(self, waveform: torch.Tensor) -> torch.Tensor:
        """The vocoder's features (N, D) of a waveform (T,) at the encoder's rate."""
        return encode_utterance(self.model, waveform, self.vocoder.spec.layer_spec, self.vocoder.selector)

    def pool(
        self, target: str | Path | Sequence[str | Path], *, speaker: str | None = None, exclude: Sequence[str] = (),
        min_seconds: float = 5.0, with_pitch: bool | None = None,
    ) -> TargetPool:  # fmt: skip
        """The target pool (see :func:`audiossl_vc.pool.target_source`); its pitch tracks when the vocoder
        needs them (``with_pitch`` None) or when asked."""
        source = target_source(target, speaker, exclude)
        return build_pool(
            self.model, self.vocoder.spec.layer_spec, source, selector=self.vocoder.selector, min_seconds=min_seconds,
            with_pitch=self.vocoder.needs_pitch if with_pitch is None else with_pitch,
        )  # fmt: skip

    def pitch(self, waveform: torch.Tensor, frames: int) -> PitchTrack:
        """F0, voicing and loudness of ``waveform`` (T,) on the feature grid (``frames`` frames)."""
        return analyse(waveform, self.sample_rate, self.vocoder.spec.hop, frames)

    def source_pitch(self, waveform: torch.Tensor, source_name: str | Path | None = None) -> PitchTrack:
        """The source's track on the feature grid; a DataError naming ``source_name`` if nothing in it is voiced."""
        track = self.pitch(waveform, waveform.shape[-1] // self.vocoder.spec.hop)
        if not bool(track.voiced.any()):
            raise DataError("the source has no voiced frames (pYIN found no pitch), nothing to sing", source_name)
        return track

    @torch.no_grad()
    def vocode(self, features: torch.Tensor, pitch: PitchTrack | None = None) -> torch.Tensor:
        """Waveform (N x hop,) of features (N, D) (``neucosvc``: with the F0 and loudness of ``pitch``)."""
        lengths = torch.tensor([features.shape[0]])
        if not self.vocoder.needs_pitch:
            return self.vocoder(features.unsqueeze(0), lengths)[0][0]
        if pitch is None:
            raise ValueError("a neucosvc vocoder renders features with a pitch track")
        return self.vocoder(features.unsqueeze(0), lengths, pitch.f0[None], pitch.loudness[None])[0][0]

    @torch.no_grad()
    def render(
        self, waveform: torch.Tensor, pool: TargetPool, k: int = 4, *,
        key_shift_spec: str | float | None = None, source_name: str | Path | None = None,
        track: PitchTrack | None = None,
    ) -> Rendered:  # fmt: skip
        """``waveform`` (T,) in the pool's voice, with the key shift applied (``neucosvc``) and the source's track.

        ``key_shift_spec``: ``auto`` (default for ``neucosvc``: the pool's register) or semitones; other vocoders
        take the pitch of the matched frames and refuse a key shift. ``track``: the source's (from
        :meth:`source_pitch`), if already measured.
        """
        features = self.features(waveform)  # (N, D)
        matched = knn_match(features, pool.features, k)  # (N, D)
        if not self.vocoder.needs_pitch:
            if key_shift_spec is not None:
                raise ConfigError(
                    f"a {self.vocoder.spec.kind} vocoder takes the pitch of the matched frames and cannot shift keys; "
                    "train a neucosvc vocoder (audiossl vc train-vocoder --kind neucosvc)"
                )
            return Rendered(self.vocode(matched), 0.0, None)
        track = (track if track is not None else self.source_pitch(waveform, source_name)).fitted(features.shape[0])
        if not pool.pitch:
            raise ConfigError("the target pool was built without pitch tracks (build_pool(with_pitch=True))")
        shift = key_shift("auto" if key_shift_spec is None else key_shift_spec, track, pool.pitch, source_name,
                          pool.path)  # fmt: skip
        return Rendered(self.vocode(matched, track.shifted(shift)), shift, track)

    @torch.no_grad()
    def convert(self, waveform: torch.Tensor, pool: TargetPool, k: int = 4, **options) -> torch.Tensor:
        """``waveform`` (T,) spoken (or sung) in the pool's voice: (N x hop,) samples at the encoder's rate."""
        return self.render(waveform, pool, k, **options).waveform


def write_wav(path: str | Path, waveform: torch.Tensor, sample_rate: int) -> Path:
    """Write a mono float waveform as 16-bit PCM WAV, atomically; peaks above 0.99 are scaled down."""
    samples = waveform.detach().float().cpu()
    peak = float(samples.abs().max()) if samples.numel() else 0.0
    if peak > 0.99:
        samples = samples * (0.99 / peak)
    path = Path(path)
    with atomic_path(path) as tmp:
        soundfile.write(tmp, samples.numpy(), sample_rate, subtype="PCM_16", format="WAV")
    return path


def plot_conversion(source: torch.Tensor, converted: torch.Tensor, sample_rate: int, path: str | Path) -> Path:
    """Log-mel spectrograms of the source and the converted speech, one above the other, as a PNG (atomic)."""
    import matplotlib

    matplotlib.use("Agg")
    import torchaudio
    from matplotlib.figure import Figure

    hop = max(1, sample_rate // 100)
    mel = torchaudio.transforms.MelSpectrogram(sample_rate, n_fft=4 * hop, hop_length=hop, n_mels=64)
    to_db = torchaudio.transforms.AmplitudeToDB(top_db=80.0)
    figure = Figure(figsize=(8, 5), dpi=100)
    for row, (title, wave) in enumerate([("source", source), ("converted", converted)]):
        image = to_db(mel(wave.detach().float().cpu()))  # (64, frames)
        axes = figure.add_subplot(2, 1, row + 1)
        axes.imshow(image.numpy(), origin="lower", aspect="auto", cmap="magma")
        axes.set_title(title)
        axes.set_ylabel("mel band")
    axes.set_xlabel("frame")
    figure.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    return path


def convert_file(
    source: str | Path,
    target: str | Path | Sequence[str | Path],
    model_path: str | Path,
    vocoder_run: str | Path,
    out: str | Path,
    *,
    k: int = 4,
    layer: str | None = None,
    target_speaker: str | None = None,
    min_seconds: float = 5.0,
    plot: str | Path | None = None,
    key_shift: str | float | None = None,
) -> Rendered:
    """The library function behind ``audiossl vc convert``: write ``out`` (WAV at the encoder's rate).

    ``key_shift`` (``neucosvc`` only): ``auto`` (the default there) or semitones.
    """
    converter = Converter.load(model_path, vocoder_run, layer)
    waveform, _ = load_audio(source, converter.sample_rate)
    # an unsingable source fails before the (slower) target pool is built
    track = converter.source_pitch(waveform, source) if converter.vocoder.needs_pitch else None
    pool = converter.pool(target, speaker=target_speaker, exclude=[str(source)], min_seconds=min_seconds)
    rendered = converter.render(waveform, pool, k, key_shift_spec=key_shift, source_name=source, track=track)
    write_wav(out, rendered.waveform, converter.sample_rate)
    if plot is not None:
        plot_conversion(waveform, rendered.waveform, converter.sample_rate, plot)
    return rendered
