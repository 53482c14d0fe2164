"""``audiossl data filter``: every table loses the dropped utterances alike, compared with slow references.

References: the project's own :func:`audiossl.data.subset.subset` (an independent implementation
over parsed tables) for the core tables, and per-line loops written here for the tables it does not
carry (text.phn, reco2dur, spk2gender, trials, spk2utt).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile

from audiossl.cli.main import main
from audiossl.data.kaldi import DataDir, kaldi_sort_key
from audiossl.data.subset import subset
from audiossl.data.validate import validate_data_dir

RATE = 16000
#: recording -> seconds; segment -> (recording, start, end, speaker)
RECORDINGS = {"recA": 2.0, "recB": 1.5, "recC": 1.0}
SEGMENTS = {
    "a1": ("recA", 0.0, 0.8, "s1"),
    "a2": ("recA", 0.8, 1.9, "s2"),
    "b1": ("recB", 0.1, 0.7, "s1"),
    "b2": ("recB", 0.7, 1.4, "s3"),
    "c1": ("recC", 0.0, -1, "s3"),
}


def write(path: Path, lines: list[str]) -> None:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


@pytest.fixture
def segmented(tmp_path) -> Path:
    """A data dir with segments and every kind of table (and an audio folder inside it)."""
    data = tmp_path / "src"
    (data / "wav").mkdir(parents=True)
    rng = np.random.default_rng(0)
    wav = []
    for name, seconds in RECORDINGS.items():
        soundfile.write(data / "wav" / f"{name}.wav", 0.1 * rng.standard_normal(int(seconds * RATE)), RATE)
        wav.append(f"{name} {data / 'wav' / f'{name}.wav'}")
    write(data / "wav.scp", wav)
    write(data / "segments", [f"{u} {r} {s} {e}" for u, (r, s, e, _) in SEGMENTS.items()])
    write(data / "utt2spk", [f"{u} {spk}" for u, (*_, spk) in SEGMENTS.items()])
    speakers = sorted({spk for *_, spk in SEGMENTS.values()})
    write(data / "spk2utt", [f"{s} {' '.join(u for u, v in SEGMENTS.items() if v[3] == s)}" for s in speakers])
    write(data / "text", [f"{u} WORDS OF {u.upper()}" for u in SEGMENTS])
    write(data / "text.phn", [f"{u} p h {u[0]}" for u in SEGMENTS])
    write(data / "utt2emo", [f"{u} {'happy' if i % 2 else 'sad'}" for i, u in enumerate(SEGMENTS)])
    durations = {u: (RECORDINGS[r] if e < 0 else e) - s for u, (r, s, e, _) in SEGMENTS.items()}
    write(data / "utt2dur", [f"{u} {d:.3f}" for u, d in durations.items()])
    write(data / "reco2dur", [f"{r} {d}" for r, d in RECORDINGS.items()])
    write(data / "spk2gender", [f"{s} {'f' if s != 's2' else 'm'}" for s in speakers])
    write(data / "trials", ["target a1 b1", "nontarget a1 a2", "target a1 c1", "target b2 c1", "nontarget a2 c1"])
    write(data / "lexicon.txt", ["WORDS w er d z", "OF ah v"])
    return data


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_every_table_is_filtered_like_the_references(segmented, tmp_path, capsys):
    listing = tmp_path / "drop.txt"
    write(listing, ["# dropped by hand", "a2", "", "recB  (both of its segments)"])
    out = tmp_path / "out"
    assert main(["data", "filter", str(segmented), "-o", str(out), "--exclude", str(listing)]) == 0
    dropped = {"a2", "b1", "b2"}
    kept = [u for u in SEGMENTS if u not in dropped]

    # Core tables: as the project's subset() of the parsed dir.
    reference, got = subset(DataDir.load(segmented), kept), DataDir.load(out)
    assert got.wav_scp == reference.wav_scp and set(got.wav_scp) == {"recA", "recC"}
    spans = {u: (s.recording, s.start, s.end) for u, s in got.segments.items()}
    assert spans == {u: (s.recording, s.start, s.end) for u, s in reference.segments.items()}
    assert got.utt2spk == reference.utt2spk and got.text == reference.text and got.utt2dur == reference.utt2dur
    assert got.labels == reference.labels == {"emo": {"a1": "sad", "c1": "sad"}}

    # The rest: slow per-line references.
    keep_line = lambda line: line.split()[0] in kept  # noqa: E731
    assert lines(out / "text.phn") == [line for line in lines(segmented / "text.phn") if keep_line(line)]
    assert lines(out / "reco2dur") == [line for line in lines(segmented / "reco2dur") if line.split()[0] != "recB"]
    speakers_left = {SEGMENTS[u][3] for u in kept}
    assert lines(out / "spk2gender") == [g for g in lines(segmented / "spk2gender") if g.split()[0] in speakers_left]
    assert lines(out / "trials") == [t for t in lines(segmented / "trials") if not set(t.split()[1:]) & dropped]
    spk2utt = {}
    for utt in sorted(kept, key=kaldi_sort_key):
        spk2utt.setdefault(SEGMENTS[utt][3], []).append(utt)
    assert lines(out / "spk2utt") == [f"{s} {' '.join(us)}" for s, us in sorted(spk2utt.items())]
    assert (out / "lexicon.txt").read_bytes() == (segmented / "lexicon.txt").read_bytes()
    assert not (out / "wav").exists()  # the audio stays where wav.scp points

    assert lines(out / "dropped.txt") == [
        f"a2 listed in {listing}:2",
        f"b1 listed in {listing}:4 (recording recB)",
        f"b2 listed in {listing}:4 (recording recB)",
    ]
    printed = capsys.readouterr().out
    assert "dropped 3 utterance(s), kept 2" in printed and "not copied (folders stay in" in printed
    assert validate_data_dir(out) == []  # consistent, audio included
    assert validate_data_dir(segmented) == []  # and the source is untouched


def test_drop_bad_removes_what_validate_reports(segmented, tmp_path, caplog):
    # Break it: unreadable audio (recB), a wrong duration (a1), a missing text line (a2), an orphan line (zz9).
    Path(segmented / "wav" / "recB.wav").write_bytes(b"RIFF....not audio")
    rows = lines(segmented / "utt2dur")
    rows[0] = "a1 5.0"
    write(segmented / "utt2dur", rows)
    write(segmented / "text", [row for row in lines(segmented / "text") if not row.startswith("a2 ")])
    write(segmented / "utt2emo", [*lines(segmented / "utt2emo"), "zz9 sad"])
    problems = validate_data_dir(segmented)
    assert {p.subject for p in problems} == {"recB", "a1", "a2", "zz9"}

    out = tmp_path / "clean"
    with caplog.at_level(logging.WARNING):
        assert main(["data", "filter", str(segmented), "-o", str(out), "--drop-bad"]) == 0
    dropped = dict(line.split(" ", 1) for line in lines(out / "dropped.txt"))
    assert set(dropped) == {"a1", "a2", "b1", "b2", "zz9"}
    assert "disagrees with the audio" in dropped["a1"] and "no entry for utterance 'a2'" in dropped["a2"]
    assert dropped["b1"] == dropped["b2"] and "wav.scp" in dropped["b1"]
    assert [line.split()[0] for line in lines(out / "wav.scp")] == ["recC"]
    assert lines(out / "utt2emo") == ["c1 sad"]  # the orphan line went too
    assert validate_data_dir(out) == []  # audio included


def test_bad_list_lines_name_the_file_and_line(segmented, tmp_path, capsys, caplog):
    listing = tmp_path / "list.txt"
    out = tmp_path / "out"
    write(listing, ["a1", "a9"])
    assert main(["data", "filter", str(segmented), "-o", str(out), "--exclude", str(listing)]) == 2
    err = capsys.readouterr().err
    assert f"{listing}:2: 'a9' is neither an utterance nor a recording" in err and "Traceback" not in err
    assert not out.exists()

    listing.write_bytes(b"a1\nb\xff1\n")
    assert main(["data", "filter", str(segmented), "-o", str(out), "--exclude", str(listing)]) == 2
    assert f"{listing}:2: not valid UTF-8" in capsys.readouterr().err

    write(listing, [f"{segmented}/utt2dur:3: 'a1': 5.0 s disagrees with the audio"])  # validate's output
    assert main(["data", "filter", str(segmented), "-o", str(out), "--exclude", str(listing)]) == 2
    assert "use --drop-bad" in capsys.readouterr().err

    write(listing, ["a1", "a9"])
    with caplog.at_level(logging.WARNING):
        args = ["data", "filter", str(segmented), "-o", str(out), "--exclude", str(listing), "--allow-unknown"]
        assert main(args) == 0
    assert f"{listing}:2: 'a9' is neither" in caplog.text and lines(out / "dropped.txt")[0].startswith("a1 ")


def test_output_rules(segmented, tmp_path, capsys, monkeypatch):
    listing = tmp_path / "list.txt"
    write(listing, ["a1"])
    base = ["data", "filter", str(segmented), "--exclude", str(listing)]
    assert main([*base, "-o", str(segmented)]) == 2
    assert "not the one being filtered" in capsys.readouterr().err
    assert main(["data", "filter", str(segmented), "-o", str(tmp_path / "x")]) == 2  # nothing to drop
    out = tmp_path / "out"
    out.mkdir()
    (out / "old").write_text("stale")
    assert main([*base, "-o", str(out)]) == 2
    assert "--force replaces it" in capsys.readouterr().err
    assert main([*base, "-o", str(out), "--force"]) == 0
    assert not (out / "old").exists() and "a1" not in DataDir.load(out).utt2spk

    # A failure while writing leaves neither a half-written OUT nor a temporary dir behind.
    import audiossl.data.filter as module

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(module, "_write_speaker_table", fail)
    with pytest.raises(OSError):
        module.filter_data_dir(segmented, tmp_path / "new", {"a1": "test"})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["src", "list.txt", "out"])


def test_fix_points_at_filter_for_what_it_will_not_delete(segmented):
    from audiossl.data.validate import fix_data_dir

    write(segmented / "text", [row for row in lines(segmented / "text") if not row.startswith("b1 ")])
    changes = fix_data_dir(segmented)
    assert any(c.startswith("not fixed") and "'b1'" in c for c in changes)
    assert changes[-1] == f"to drop those utterances instead: audiossl data filter {segmented} -o NEW_DIR --drop-bad"
