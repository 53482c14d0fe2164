"""Constants shared by the diarization tests and their fixtures (a uniquely named module: every
test folder has a ``conftest``, so ``from conftest import ...`` picks whichever came first)."""

from __future__ import annotations

#: Recordings per subset of the test corpus (train, development, test).
RECORDINGS = (4, 1, 2)
