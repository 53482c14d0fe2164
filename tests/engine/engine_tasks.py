"""The third-party speaker-id task of the downstream tests, importable from the engine tests and workers."""

from __future__ import annotations

import sys
from pathlib import Path

THIRDPARTY = Path(__file__).resolve().parents[1] / "downstream" / "thirdparty"
if str(THIRDPARTY) not in sys.path:
    sys.path.insert(0, str(THIRDPARTY))

from audiossl_spkid import make_task  # noqa: E402

__all__ = ["make_task"]
