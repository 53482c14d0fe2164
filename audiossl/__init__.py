"""audiossl: speech and audio self-supervised learning."""

from __future__ import annotations

__version__ = "0.1.0"
