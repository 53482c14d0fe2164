"""audiossl plugins built on an attention decoder: text-to-speech (``tts``), speech translation (``st``) and
speech-to-speech voice conversion (``s2s``), with MCD-DTW and BLEU.

Submodules are imported on use, so plugin discovery (at every ``audiossl`` start-up) stays cheap.
"""

from __future__ import annotations

__version__ = "0.1.0"
