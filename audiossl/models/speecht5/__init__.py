"""SpeechT5 (Ao et al. 2022): the shared encoder-decoder bundle around the ``speecht5`` encoder family.

See :mod:`audiossl.models.speecht5.model` for the API (:func:`load_speecht5`,
:class:`SpeechT5Backbone`) and :mod:`audiossl.models.speecht5.nets` for the pre/post-nets.
"""

from __future__ import annotations

from audiossl.models.speecht5.model import (
    SpeechT5Backbone,
    SpeechT5BackboneConfig,
    SpeechT5Pretrained,
    backbone_config,
    load_speecht5,
)
from audiossl.models.speecht5.nets import (
    LogMelTarget,
    MelOutput,
    MelTargetConfig,
    SpeechDecoderPostnet,
    SpeechDecoderPrenet,
    SpeechPrenetConfig,
    TextEncoderPrenet,
    decoder_mel_inputs,
)

__all__ = [
    "LogMelTarget",
    "MelOutput",
    "MelTargetConfig",
    "SpeechDecoderPostnet",
    "SpeechDecoderPrenet",
    "SpeechPrenetConfig",
    "SpeechT5Backbone",
    "SpeechT5BackboneConfig",
    "SpeechT5Pretrained",
    "TextEncoderPrenet",
    "backbone_config",
    "decoder_mel_inputs",
    "load_speecht5",
]
