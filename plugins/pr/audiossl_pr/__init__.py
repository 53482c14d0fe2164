"""audiossl's phoneme-recognition plugin (SUPERB PR): the asr plugin's CTC head over phones, phone error rate.

Names are imported lazily (PEP 562): ``audiossl`` loads this package's plugin object at every
start-up, which must not pull in torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: Public name -> submodule defining it.
_EXPORTS = {
    "PhoneScore": "metrics",
    "phone_error_rate": "metrics",
    "score_phones": "metrics",
    "PhoneSet": "phones",
    "data_dir_phones": "phones",
    "read_lexicon": "phones",
    "read_phone_table": "phones",
    "PRTask": "task",
}

__all__ = [
    "PRTask",
    "PhoneScore",
    "PhoneSet",
    "data_dir_phones",
    "phone_error_rate",
    "read_lexicon",
    "read_phone_table",
    "score_phones",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:
    from audiossl_pr.metrics import PhoneScore, phone_error_rate, score_phones
    from audiossl_pr.phones import PhoneSet, data_dir_phones, read_lexicon, read_phone_table
    from audiossl_pr.task import PRTask
