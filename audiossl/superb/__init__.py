"""SUPERB in one command: every (upstream, task) pair trained and scored alike, a leaderboard, layer weights.

* :mod:`audiossl.superb.tasks`: the SUPERB task names, the plugin behind each and its metric;
* :mod:`audiossl.superb.dataconfig`: the YAML data config (task -> train/dev/test dirs + label file);
* :mod:`audiossl.superb.datasets`: data configs for the embedded synthetic corpus and FSDD;
* :mod:`audiossl.superb.runner`: the resumable per-pair runs (atomic result files);
* :mod:`audiossl.superb.leaderboard`: Markdown/CSV tables, the SUPERB-style score, plots.

See docs/superb.md.
"""
