"""Deprecated: moved to :mod:`audiossl.data.topics` (topics are utterance targets derived from label dirs);
kept for one release."""

from __future__ import annotations

from audiossl.data.topics import (  # noqa: F401
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
