"""Speaker verification on audiossl encoders: attentive-statistics head, AAM-softmax, cosine scoring, EER/minDCF."""

from __future__ import annotations

__version__ = "0.1.0"
