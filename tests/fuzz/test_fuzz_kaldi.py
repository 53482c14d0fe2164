"""Fuzzing the Kaldi table parsers: any table either parses or raises DataError, never another exception.

Tables are written to files (the parsers read files) as runs of tokens: ids from a small pool (so
duplicates happen), separators (space, tab, CR, odd Unicode spaces), newlines, numbers and
near-numbers, paths, pipe commands and invalid UTF-8 bytes; sometimes arbitrary bytes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from fuzzing import fuzz_settings
from hypothesis import given
from hypothesis import strategies as st

from audiossl.data.kaldi import DataDir, read_entries, read_table, split_line
from audiossl.data.validate import validate_data_dir
from audiossl.errors import DataError, UserError

#: The pieces tables are made of: ids, separators, newlines, numbers and near-numbers, paths,
#: pipes, archive offsets, non-ASCII and invalid UTF-8 bytes. A table is a run of them.
TOKENS = [
    *(t.encode("utf-8") for t in ["a", "b", "utt1", "utt2", "spk1", "rec1", "é", "a-b_c", "x" * 40]),
    b" ",
    b"\t",
    b"  ",
    b"\r",
    b"\n",
    b"\r\n",
    b"\n\n",
    b"\x0b",
    "\u3000".encode(),
    "\u00a0".encode(),
    b"\x00",
    *(t.encode("utf-8") for t in ["0", "1", "-1", "0.5", "1e3", "1e400", "nan", "inf", "-inf", "1_0", "0x10", ".5"]),
    *(t.encode("utf-8") for t in ["5.", "1.2.3", "--1", "١٢", "3.25", "-0.0", "99999999999999999999"]),
    b"/no/such.wav",
    b"sox a.wav -t wav - |",
    b"x.ark:12",
    b"|",
    b"#",
    b"\xff",
    b"\xc3",
    b"\xe2\x82",
]


@st.composite
def tables(draw) -> bytes:
    """One table's bytes: a run of tokens (mostly id, separator, values, newline), or arbitrary bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=120))
    return b"".join(draw(st.lists(st.sampled_from(TOKENS), max_size=40)))


TABLE_NAMES = ["wav.scp", "segments", "utt2spk", "spk2utt", "text", "utt2dur", "utt2num_samples", "reco2dur", "utt2emo"]

_ROOT = Path(tempfile.mkdtemp(prefix="audiossl-fuzz-kaldi-"))


def _fresh_dir(name: str) -> Path:
    path = Path(tempfile.mkdtemp(dir=_ROOT, prefix=name))
    return path


@fuzz_settings(2000)
@given(line=st.text(max_size=60))
def test_split_line_never_raises(line):
    key, value = split_line(line)
    assert isinstance(key, str) and isinstance(value, str)
    assert " " not in key and "\t" not in key


@fuzz_settings(2000)
@given(data=tables(), allow_empty=st.booleans())
def test_read_table_parses_or_raises_data_error(data, allow_empty):
    path = _fresh_dir("table") / "utt2spk"
    path.write_bytes(data)
    try:
        table = read_table(path, allow_empty_value=allow_empty)
    except DataError as error:
        assert error.path == str(path)
        return
    entries = read_entries(path, allow_empty_value=allow_empty)
    assert list(table) == [entry.key for entry in entries]  # every line kept, in file order, ids unique
    for entry in entries:
        assert allow_empty or entry.value


@fuzz_settings(1000)
@given(contents=st.dictionaries(st.sampled_from(TABLE_NAMES), tables(), min_size=1, max_size=5))
def test_data_dir_load_parses_or_raises_data_error(contents):
    root = _fresh_dir("data")
    for name, data in contents.items():
        (root / name).write_bytes(data)
    try:
        data_dir = DataDir.load(root)
    except DataError as error:
        assert error.path is not None and error.path.startswith(str(root))
        return
    assert isinstance(data_dir.wav_scp, dict)
    for segment in (data_dir.segments or {}).values():
        assert isinstance(segment.start, float) and isinstance(segment.end, float)


@fuzz_settings(1000)
@given(contents=st.dictionaries(st.sampled_from(TABLE_NAMES), tables(), min_size=1, max_size=5))
def test_validate_reports_problems_and_never_crashes(contents):
    root = _fresh_dir("validate")
    for name, data in contents.items():
        (root / name).write_bytes(data)
    try:
        problems = validate_data_dir(root, check_audio=False)
    except UserError:
        return
    for problem in problems:
        assert str(root) in str(problem)
