"""PR plugin test set-up: a small thread count for a shared 2-core machine."""

from __future__ import annotations

import torch

torch.set_num_threads(2)
