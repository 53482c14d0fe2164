"""The data config of ``audiossl superb``: which data dirs and label file each task uses.

A YAML file::

    tasks:
      ks:                      # a SUPERB task name (audiossl.superb.tasks.TASKS)
        train: data/ks/train   # Kaldi data dirs; relative paths are relative to this file
        dev: data/ks/dev       # optional for trained tasks (early stopping / validation)
        test: data/ks/test
        label: utt2kw          # the label file in every dir (default: the task's usual one)
      qbe:
        queries: data/qbe/queries   # data dir with words.ctm: the spoken queries are cut from it
        dev: data/qbe/dev           # documents searched to choose the layer
        test: data/qbe/test         # documents searched for the score
        # or, instead of queries: dev_queries / test_queries: query lists (QUESST's queries),
        # 'query_id term audio_path [start end]' per line (see audiossl_qbe.queries.read_query_list)

Optional per task: ``plugin``, ``metric``, ``higher_is_better`` and ``options`` (the task
factory's keyword arguments) override :data:`~audiossl.superb.tasks.TASKS`. Every problem
(an unknown task or key, a missing dir or label file) is a :class:`~audiossl.errors.ConfigError`
naming the config file and the line of the offending key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audiossl.config import read_yaml
from audiossl.errors import ConfigError
from audiossl.superb.tasks import TASKS, TaskSpec, customised

_KEYS = {
    "train",
    "dev",
    "test",
    "label",
    "queries",
    "dev_queries",
    "test_queries",
    "plugin",
    "metric",
    "higher_is_better",
    "options",
}


@dataclass(frozen=True)
class TaskData:
    """One task of a data config, paths resolved."""

    spec: TaskSpec
    train: Path | None
    dev: Path | None
    test: Path
    label: str | None
    queries: Path | None = None
    query_lists: dict[str, Path] = field(default_factory=dict)
    """QbE: ``dev`` / ``test`` -> query list file (instead of cutting queries from ``queries``)."""
    line: int | None = None
    """Line of the task in the config file (for messages)."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name


def load_data_config(path: str | Path, tasks: list[str] | None = None) -> dict[str, TaskData]:
    """The tasks of a data config (only ``tasks``, in that order, when given; each must be in the file)."""
    path = Path(path)
    data, lines = read_yaml(path)
    if set(data) != {"tasks"} or not isinstance(data.get("tasks"), dict) or not data["tasks"]:
        extra = sorted(set(data) - {"tasks"})
        line = lines.get((extra[0],)) if extra else None
        raise ConfigError("a data config is one mapping 'tasks:' of task name -> dirs", path, line)
    entries = data["tasks"]
    for name in entries:
        if name not in TASKS:
            raise ConfigError(f"unknown task {name!r}; known: {', '.join(TASKS)}", path, lines.get(("tasks", name)))
    wanted = list(entries) if tasks is None else tasks
    for name in wanted:
        if name not in TASKS:
            raise ConfigError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
        if name not in entries:
            raise ConfigError(f"task {name!r} is not in the data config (it has: {', '.join(entries)})", path)
    return {name: _task(name, entries[name], path, lines) for name in wanted}


def _task(name: str, entry: Any, path: Path, lines: dict) -> TaskData:
    where = ("tasks", name)
    if not isinstance(entry, dict):
        raise ConfigError(f"task {name!r}: expected a mapping of train/dev/test dirs", path, lines.get(where))
    for key in entry:
        if key not in _KEYS:
            raise ConfigError(
                f"task {name!r}: unknown key {key!r} (known: {', '.join(sorted(_KEYS))})",
                path,
                lines.get((*where, key)),
            )
    options = entry.get("options")
    if options is not None and not isinstance(options, dict):
        raise ConfigError(f"task {name!r}: options must be a mapping", path, lines.get((*where, "options")))
    spec = customised(
        TASKS[name],
        plugin=entry.get("plugin"),
        metric=entry.get("metric"),
        higher_is_better=entry.get("higher_is_better"),
        options=None if options is None else {**TASKS[name].options, **options},
    )
    label = entry.get("label", spec.label)

    def directory(key: str, required: bool) -> Path | None:
        value = entry.get(key)
        if value is None:
            if required:
                raise ConfigError(f"task {name!r} needs '{key}:' (a data dir)", path, lines.get(where))
            return None
        resolved = Path(value) if Path(value).is_absolute() else (path.parent / value)
        if not (resolved / "wav.scp").is_file():
            raise ConfigError(
                f"task {name!r}: {key} dir {resolved} is not a data dir (no wav.scp)", path, lines.get((*where, key))
            )
        return resolved.resolve()

    qbe = spec.kind == "qbe"
    lists = {}
    for key in ("dev_queries", "test_queries"):
        if entry.get(key) is not None:
            value = Path(entry[key]) if Path(entry[key]).is_absolute() else path.parent / entry[key]
            if not value.is_file():
                raise ConfigError(f"task {name!r}: query list {value} not found", path, lines.get((*where, key)))
            lists[key.split("_")[0]] = value.resolve()
    if qbe and lists and set(lists) != {"dev", "test"}:
        raise ConfigError(f"task {name!r}: give both dev_queries and test_queries", path, lines.get(where))
    dirs = {
        "train": directory("train", not qbe),
        "dev": directory("dev", qbe),
        "test": directory("test", True),
        "queries": directory("queries", qbe and not lists),
    }
    if lists:
        label = None  # query lists carry their own audio; no alignment file needed
    if label is not None:
        needing = ("queries",) if qbe else ("train", "dev", "test")
        for key in needing:
            if dirs[key] is not None and not (dirs[key] / label).is_file():
                raise ConfigError(
                    f"task {name!r}: label file {label} missing in the {key} dir {dirs[key]}",
                    path,
                    lines.get((*where, "label"), lines.get((*where, key))),
                )
    if qbe:
        for key in ("dev", "test"):
            if not (dirs[key] / "text").is_file():
                raise ConfigError(
                    f"task {name!r}: the {key} documents need a text file (where the terms occur)",
                    path,
                    lines.get((*where, key)),
                )
    return TaskData(spec, dirs["train"], dirs["dev"], dirs["test"], label, dirs["queries"], lists, lines.get(where))


def write_data_config(path: str | Path, tasks: dict[str, dict[str, Any]], header: str = "") -> Path:
    """Write a data config (``tasks`` as in the file; paths written as given) atomically, with a comment header."""
    import yaml

    from audiossl.fileio import atomic_write

    path = Path(path)
    with atomic_write(path) as handle:
        for line in header.strip().splitlines():
            handle.write(f"# {line}\n")
        yaml.safe_dump({"tasks": tasks}, handle, sort_keys=False)
    return path
