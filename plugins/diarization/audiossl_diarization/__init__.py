"""Speaker diarization with pyannote.audio on audiossl embeddings, without the model hub.

* :mod:`~audiossl_diarization.corpus`: multi-speaker recordings (RTTM, UEM, a pyannote.database
  protocol) mixed from any speaker-labelled data dir, e.g. ``audiossl data synth``;
* :mod:`~audiossl_diarization.embedding`: any audiossl encoder (or a trained ``audiossl sv`` run)
  as a pyannote speaker-embedding :class:`~pyannote.audio.core.model.Model`;
* :mod:`~audiossl_diarization.segmentation`: a pyannote PyanNet segmentation model trained locally;
* :mod:`~audiossl_diarization.pipeline`: pyannote's ``SpeakerDiarization`` pipeline on both;
* :mod:`~audiossl_diarization.evaluation`: DER (pyannote.metrics) with its components.
"""

from __future__ import annotations

__version__ = "0.1.0"
