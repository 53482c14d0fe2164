"""The objective interface: encoder + heads + masking + loss, chosen by name.

An objective owns its encoder call: it receives the raw features, decides what to mask,
runs the encoder and scores the output. The encoder is passed in at construction, so one
encoder class serves every objective (as torchaudio keeps ``hubert_loss`` out of the model
and pyannote's ``Task`` drives a ``Model``). Objectives register a spec (name, config class,
factory) in :data:`OBJECTIVES`; :func:`create_objective` builds one by name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from audiossl.config import from_dict
from audiossl.data.dataset import Batch
from audiossl.encoders.base import Encoder
from audiossl.errors import ConfigError
from audiossl.nn.outputs import LossOutput, scalar_metrics  # noqa: F401  (re-exported: objectives import them here)
from audiossl.registry import Registry


@dataclass
class FeatureInputs:
    """The default inputs of :meth:`Objective.forward`: the batch through the input pipeline."""

    features: torch.Tensor
    """(B, F, C) spectrogram frames or (B, T) waveforms."""

    lengths: torch.Tensor
    """(B,) valid frames (samples)."""


def pipeline_features(
    batch: Batch, inputs: nn.Module, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` through the input pipeline ``inputs`` -> (features, lengths) (see :meth:`Objective.prepare_batch`)."""
    if batch.features is not None:
        return inputs(
            batch.waveforms,
            batch.lengths,
            generator=generator,
            features=batch.features,
            feature_lengths=batch.feature_lengths,
        )
    return inputs(batch.waveforms, batch.lengths, generator=generator)


class Objective(nn.Module):
    """Base class: ``forward(**inputs, step=None, generator=None) -> LossOutput``.

    ``inputs`` are the keyword arguments :meth:`batch_inputs` makes from a batch; by default
    ``features`` (B, F, C) spectrogram frames or (B, T) waveforms and ``lengths`` (B,) valid
    frames (samples). ``step`` is the optimizer step for schedules (e.g. the Gumbel
    temperature; None counts as 0). ``generator`` draws every random choice of the objective
    (masks, negatives, Gumbel noise); None draws from torch's global RNG (which the trainer
    seeds and checkpoints). Subclasses hold the encoder as ``self.encoder`` and their own heads.

    Each objective declares its inputs as a dataclass, :attr:`inputs_type`; ``forward`` takes
    its fields as keyword arguments, then ``step`` and ``generator`` (a test checks this for
    every registered objective). Optional hooks, each with a default: :meth:`prepare_batch`
    (batch -> :attr:`inputs_type`, before autocast; default: the input pipeline once),
    :meth:`sample_mask` (the token mask it draws; default None = it masks nothing) and
    :meth:`on_step_end` (updates after every optimizer step, e.g. an EMA teacher; default
    nothing).
    """

    #: The dataclass of ``forward``'s inputs, made by :meth:`prepare_batch`.
    inputs_type: ClassVar[type] = FeatureInputs
    #: Weight-name prefixes of heads tied to this run's targets (cluster embeddings, pseudo-speaker
    #: classes): ``run.init_from`` leaves them freshly initialised, since their shape or meaning
    #: changes from one iteration to the next.
    target_heads: ClassVar[tuple[str, ...]] = ()

    def __init__(self, encoder: Encoder):
        super().__init__()
        self.encoder = encoder

    def forward(
        self, *args: Any, step: int | None = None, generator: torch.Generator | None = None, **inputs: Any
    ) -> LossOutput:
        raise NotImplementedError

    def sample_mask(
        self, token_lengths: torch.Tensor, num_tokens: int, generator: torch.Generator | None = None
    ) -> torch.Tensor | None:
        """The token mask this objective draws for items of ``token_lengths`` (B,) input tokens.

        Returns (B, ``num_tokens``) bool, True = masked, never True past an item's length, or
        None when the objective draws no token mask (the default). Draws only from
        ``generator`` (None: the global RNG), so the same generator state gives the same mask;
        raises :class:`ConfigError` when the mask cannot be drawn or would hide every token of an
        item (no visible context left), naming the mask keys. The trainer draws it once for the
        shortest utterance before training and mask plots draw it for one utterance.
        """
        return None

    @property
    def has_token_mask(self) -> bool:
        """Whether :meth:`sample_mask` is overridden, i.e. the objective masks input tokens."""
        return type(self).sample_mask is not Objective.sample_mask

    def target_specs(self) -> dict[str, Any]:
        """The targets :meth:`prepare_batch` reads from ``batch.targets``, declared for the data layer.

        Name -> a declaration of :mod:`audiossl.data.targets` (``FrameLabelSpec``, ``TopicSpec``,
        ``TableRowSpec``); the training set-up resolves them once into target sources that the
        dataset applies to every utterance, cropped with its audio. The default: none.
        """
        return {}

    def prepare_batch(self, batch: Batch, inputs: nn.Module, generator: torch.Generator | None = None) -> Any:
        """Batch preparation: the :attr:`inputs_type` instance of one batch (already on the device).

        Runs outside autocast, before :meth:`forward`. The default runs the input pipeline once
        (:class:`FeatureInputs`). Objectives that need more than features override it, reading
        what the data layer attached to the batch (``batch.targets``: frame labels, utterance
        classes, cropped like the audio) or making several augmented views of
        ``batch.waveforms`` before the front-end; they never open files. ``inputs`` is the
        run's :class:`~audiossl.models.InputPipeline`; ``generator`` seeds its augmentation
        (None: global RNG; validation passes None). A batch that carries front-end features
        computed by the data loader (``batch.features``, the fairseq2 backend with
        ``data.fairseq2_fbank``) hands them to ``inputs``, which then only normalises (and
        augments) them.
        """
        return FeatureInputs(*pipeline_features(batch, inputs, generator))

    def batch_inputs(self, batch: Batch, inputs: nn.Module, generator: torch.Generator | None = None) -> dict[str, Any]:
        """Keyword arguments of :meth:`forward` for one batch, minus ``step`` and ``generator``.

        The fields of :meth:`prepare_batch`'s :attr:`inputs_type` instance, as the trainer calls
        ``objective(**objective.batch_inputs(batch, inputs, generator=...), step=..., generator=...)``.
        """
        prepared = self.prepare_batch(batch, inputs, generator)
        if not isinstance(prepared, self.inputs_type):
            raise TypeError(
                f"{type(self).__name__}.prepare_batch returned {type(prepared).__name__}, "
                f"not its inputs_type {self.inputs_type.__name__}"
            )
        return {item.name: getattr(prepared, item.name) for item in dataclasses.fields(prepared)}

    def on_step_end(self, step: int) -> None:
        """Called by the trainer after every optimizer step (``step`` counts finished steps).

        For updates outside back-propagation, e.g. an EMA teacher; the default does nothing.
        Whatever it changes must live in the state dict so that a resumed run continues exactly.
        """


def trim_to_longest(features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Drop padding past the longest item: (B, F, ...) -> (B, max(lengths), ...).

    Token makers differ in how many padding tokens they emit for extra padding frames; with
    the batch trimmed, every one of them gives ``max(token_lengths)`` tokens, so an objective
    can size its (B, S) mask before calling the encoder. Valid positions are unchanged.
    """
    longest = int(lengths.max()) if lengths.numel() else 0
    return features[:, :longest] if features.shape[1] > longest else features


@dataclass(frozen=True)
class ObjectiveSpec:
    """A registered objective: its config class and ``factory(encoder, config) -> Objective``."""

    name: str
    config_class: type
    factory: Callable[[Encoder, Any], Objective]
    description: str = ""


#: Registry of objectives by name ("mspm", "wav2vec2", "w2vbert", ...).
OBJECTIVES: Registry[ObjectiveSpec] = Registry("objective")


def register_objective(name: str, config_class: type, description: str = "") -> Callable[[type], type]:
    """Class decorator: register an :class:`Objective` subclass built as ``cls(encoder, config)``."""

    def decorator(cls: type) -> type:
        OBJECTIVES.register(name)(ObjectiveSpec(name, config_class, cls, description))
        return cls

    return decorator


def create_objective(name: str, encoder: Encoder, config: object | Mapping[str, Any] | None = None) -> Objective:
    """Build objective ``name`` around ``encoder`` from its config (a dataclass, a mapping, or None = defaults).

    Unknown names raise :class:`ConfigError` listing the registered ones; a mapping with
    unknown keys or a config of the wrong class raise it too.
    """
    import audiossl.objectives  # noqa: F401  (registers the built-in objectives)

    spec = OBJECTIVES.get(name)
    if config is None:
        config = spec.config_class()
    elif isinstance(config, Mapping):
        config = from_dict(spec.config_class, dict(config))
    elif not (dataclasses.is_dataclass(config) and isinstance(config, spec.config_class)):
        raise ConfigError(f"objective {name!r} takes a {spec.config_class.__name__}, got {type(config).__name__}")
    return spec.factory(encoder, config)
