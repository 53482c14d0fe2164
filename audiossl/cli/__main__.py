"""``python -m audiossl.cli ...`` runs the ``audiossl`` command (e.g. under ``torchrun -m audiossl.cli pretrain``)."""

from __future__ import annotations

from audiossl.cli.main import run

if __name__ == "__main__":
    run()
