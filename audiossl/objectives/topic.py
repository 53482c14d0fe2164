"""Deprecated: moved to :mod:`audiossl.cluster.topics` (topic models are fitted on cluster labels, beside them);
kept for one release."""

from __future__ import annotations

from audiossl.cluster.topics import (  # noqa: F401
    TOPIC_DIST,
    TOPIC_INFO,
    UTT2TOPIC,
    TopicConfig,
    Topics,
    ensure_topics,
    fit_topics,
    label_bags,
    read_topics,
    topics_dir,
    write_topics,
)
