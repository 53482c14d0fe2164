"""Shared settings of the property-based fuzz tests: seeded (the same examples every run), no deadline.

``FUZZ_EXAMPLES_SCALE`` (environment) multiplies every test's example count, e.g. ``FUZZ_EXAMPLES_SCALE=10``
for a long local run; the default keeps each test to a few seconds on a CI core.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

SCALE = float(os.environ.get("FUZZ_EXAMPLES_SCALE", "1"))


def fuzz_settings(examples: int) -> settings:
    """Seeded settings for ``examples`` examples (times FUZZ_EXAMPLES_SCALE)."""
    return settings(
        derandomize=True,
        max_examples=max(1, int(examples * SCALE)),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )
