"""The bad-input catalogue: what audiossl promises for each kind of bad input, one row per case.

Every row is a promise, checked by ``test_catalogue.py`` through the command line: the command
exits 2, prints no traceback, names the file (and the line, where the input has lines), and
leaves no half-written output behind (nothing new or changed anywhere under the test's folder,
no temporary files, the clean corpus and run untouched, no malicious-pickle marker).

A row is ``Case(id, build, argv, names)``: ``build(w)`` makes the bad input in the test's
``tmp_path`` (see :class:`catalogue_world.World`) and returns extra template values; ``argv`` and
``names`` are templates over ``{data}`` (the case's copy of the clean corpus), ``{out}`` (where
the command would write), ``{bad}`` (the bad inputs), ``{run}`` (the tiny pretrained run), and
what ``build`` returned. Every string of ``names`` must appear in the command's output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from catalogue_world import World

from audiossl.testing.downstream import TINY_PRETRAIN_OVERRIDES
from audiossl.train.config import preset_path


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[World], dict[str, object]]
    argv: tuple[str, ...]
    names: tuple[str, ...]
    resumable: bool = False
    """A training run that failed after it started (bad audio read lazily at step N): its run dir
    ``{out}`` stays, complete files only, for ``--resume`` once the data is fixed."""


CASES: list[Case] = []


def case(
    id: str, build: Callable[[World], dict[str, object]], argv: list[str], *names: str, resumable: bool = False
) -> None:
    assert id not in {c.id for c in CASES}, id
    CASES.append(Case(id, build, tuple(argv), names, resumable))


def nothing(w: World) -> dict[str, object]:
    return {}


# ----------------------------------------------------------------------------- commands

TINY_SETS = [item for override in TINY_PRETRAIN_OVERRIDES for item in ("--set", override)]
VALIDATE = ["data", "validate", "{data}"]
EXTRACT = ["extract", "--model", "{run}", "--data", "{data}", "-o", "{out}", "--device", "cpu"]
STATS = ["features", "stats", "{data}", "--out", "{out}/stats.npz"]
KMEANS = ["kmeans", "fit", "--data", "{data}", "--features", "mfcc", "--n-clusters", "2"]
KMEANS += ["--sample-fraction", "1", "--out", "{out}", "--device", "cpu"]
PRETRAIN = ["pretrain", "--config", "mspm-ast-tiny", "--data", "{data}", "--out", "{out}", *TINY_SETS]
PRETRAIN_CONFIG = ["pretrain", "--config", "{config}", "--data", "{data}", "--out", "{out}"]
ER_TRAIN = ["er", "train", "{data}", "-u", "{run}", "-o", "{out}", "--max-steps", "1", "--device", "cpu"]
ASR_TRAIN = ["asr", "train", "{data}", "-u", "{run}", "-o", "{out}", "--max-steps", "1", "--device", "cpu"]
SV_EMBED = ["sv", "embed", "{data}", "-u", "{run}", "-o", "{out}/xvector.ark", "--device", "cpu"]

# ----------------------------------------------------------------------------- audio files
# The second wav.scp entry points at the bad audio; every command that reads it names
# wav.scp's line 2 and the audio file.


def audio(make: Callable[[World], Path]) -> Callable[[World], dict[str, object]]:
    def build(w: World) -> dict[str, object]:
        return {"audio": w.point_wav(make(w), line=2)}

    return build


AUDIO_DEFECTS: dict[str, Callable[[World], Path]] = {
    "missing": World.audio_missing,
    "empty": World.audio_empty,
    "truncated-header": World.audio_truncated_header,
    "truncated-data": World.audio_truncated_data,
    "nan": lambda w: w.audio_nonfinite(float("nan")),
    "inf": lambda w: w.audio_nonfinite(float("inf")),
    "zero-samples": World.audio_zero_samples,
    "directory": World.audio_directory,
    "huge-declared-size": World.audio_huge_declared,
    "not-audio-renamed": World.audio_not_audio,
}
for defect, make in AUDIO_DEFECTS.items():
    for command, argv in (("validate", VALIDATE), ("extract", EXTRACT), ("features-stats", STATS)):
        case(f"audio/{defect}/{command}", audio(make), argv, "{data}/wav.scp:2", "{audio}")
for defect in ("missing", "truncated-data", "huge-declared-size", "not-audio-renamed"):
    case(f"audio/{defect}/kmeans-fit", audio(AUDIO_DEFECTS[defect]), KMEANS, "{data}/wav.scp:2", "{audio}")
for defect in ("missing", "nan"):
    case(
        f"audio/{defect}/pretrain",
        audio(AUDIO_DEFECTS[defect]),
        PRETRAIN,
        "{data}/wav.scp:2",
        "{audio}",
        resumable=True,
    )

for command, argv in (("validate", VALIDATE), ("extract", EXTRACT)):
    case(
        f"audio/rf64-huge-declared-size/{command}",
        audio(World.audio_rf64_huge_declared),
        argv,
        "{data}/wav.scp:2",
        "{audio}",
    )

# Multi-channel audio is mixed down by the readers (and logged); validate reports the odd one out.
case("audio/multichannel/validate", audio(World.audio_multichannel), VALIDATE, "{data}/wav.scp:2", "8")
# Another rate than the model's: resampled by default, refused with --rate-mismatch error.
case("audio/8khz/validate", audio(World.audio_8khz), VALIDATE, "{data}/wav.scp:2", "8000")
case(
    "audio/8khz/extract-rate-mismatch-error",
    audio(World.audio_8khz),
    [*EXTRACT, "--rate-mismatch", "error"],
    "{audio}",
    "--rate-mismatch",
)

# ----------------------------------------------------------------------------- data dirs


def unsorted(w: World) -> dict[str, object]:
    lines = w.lines("wav.scp")
    lines[0], lines[1] = lines[1], lines[0]
    w.write_lines("wav.scp", lines)
    return {}


def duplicate(table: str) -> Callable[[World], dict[str, object]]:
    def build(w: World) -> dict[str, object]:
        w.set_line(table, 3, w.lines(table)[1])
        return {}

    return build


def drop_line(table: str, number: int = 2) -> Callable[[World], dict[str, object]]:
    def build(w: World) -> dict[str, object]:
        lines = w.lines(table)
        utt = lines.pop(number - 1).split()[0]
        w.write_lines(table, lines)
        return {"utt": utt}

    return build


def non_utf8(table: str, number: int = 2) -> Callable[[World], dict[str, object]]:
    def build(w: World) -> dict[str, object]:
        path = w.data / table
        lines = path.read_bytes().splitlines(keepends=True)
        lines[number - 1] = lines[number - 1].rstrip(b"\n") + b" caf\xe9\n"
        path.write_bytes(b"".join(lines))
        return {}

    return build


def crlf(table: str) -> Callable[[World], dict[str, object]]:
    def build(w: World) -> dict[str, object]:
        w.write_lines(table, w.lines(table), newline="\r\n")
        return {}

    return build


def remove(table: str) -> Callable[[World], dict[str, object]]:
    def build(w: World) -> dict[str, object]:
        (w.data / table).unlink()
        return {}

    return build


def pipe(w: World) -> dict[str, object]:
    """wav.scp line 2 is a shell command that would create the marker file (pipes are refused by default)."""
    audio = w.lines("wav.scp")[1].split()[1]
    w.set_line("wav.scp", 2, f"{w.ids()[1]} touch {w.marker}; cat {audio} |")
    return {}


for command, argv in (("validate", VALIDATE), ("extract", EXTRACT), ("features-stats", STATS), ("kmeans-fit", KMEANS)):
    case(f"data/pipe-refused/{command}", pipe, argv, "{data}/wav.scp:2", "--allow-pipes")
case("data/unsorted/validate", unsorted, VALIDATE, "{data}/wav.scp:2")
case("data/duplicate-id/validate", duplicate("wav.scp"), VALIDATE, "{data}/wav.scp:3")
case("data/duplicate-id/extract", duplicate("wav.scp"), EXTRACT, "{data}/wav.scp:3")
case("data/duplicate-id/pretrain", duplicate("wav.scp"), PRETRAIN, "{data}/wav.scp:3")
case(
    "data/duplicate-utt2spk/sv-make-trials",
    duplicate("utt2spk"),
    ["sv", "make-trials", "{data}", "-o", "{out}/trials"],
    "{data}/utt2spk:3",
)
case("data/id-missing-utt2spk/validate", drop_line("utt2spk"), VALIDATE, "{data}/utt2spk", "{utt}")
case("data/id-missing-text/validate", drop_line("text"), VALIDATE, "{data}/text", "{utt}")
case("data/non-utf8-text/validate", non_utf8("text"), VALIDATE, "{data}/text:2")
case("data/non-utf8-text/asr-train", non_utf8("text"), ASR_TRAIN, "{data}/text:2")
case("data/non-utf8-wav.scp/extract", non_utf8("wav.scp"), EXTRACT, "{data}/wav.scp:2")
case("data/non-utf8-utt2spk/pretrain", non_utf8("utt2spk"), PRETRAIN, "{data}/utt2spk:2")
case("data/crlf-wav.scp/validate", crlf("wav.scp"), VALIDATE, "{data}/wav.scp:1")


def table_is_directory(table: str) -> Callable[[World], dict[str, object]]:
    def build(w: World) -> dict[str, object]:
        (w.data / table).unlink()
        (w.data / table).mkdir()
        return {}

    return build


case("data/table-is-a-directory/validate", table_is_directory("utt2spk"), VALIDATE, "{data}/utt2spk")
case("data/table-is-a-directory/extract", table_is_directory("utt2spk"), EXTRACT, "{data}/utt2spk")
case("data/no-wav.scp/validate", remove("wav.scp"), VALIDATE, "{data}/wav.scp")
case("data/no-wav.scp/extract", remove("wav.scp"), EXTRACT, "{data}/wav.scp")


def segments(line: str) -> Callable[[World], dict[str, object]]:
    """A segments file cutting each recording into one utterance; the first one's line is ``line``."""

    def build(w: World) -> dict[str, object]:
        ids = w.ids()
        rows = [f"{utt}-seg {utt} 0.00 0.30" for utt in ids]
        rows[0] = line.format(utt=ids[0])
        w.write_lines("segments", rows)
        for table in ("utt2spk", "text", "utt2emo", "utt2dur", "utt2num_samples", "spk2utt"):
            path = w.data / table
            if path.exists() and table != "spk2utt":
                w.write_lines(table, [f"{r.split()[0]}-seg {r.split(maxsplit=1)[1]}" for r in w.lines(table)])
        spk2utt = [" ".join([r.split()[0], *(f"{u}-seg" for u in r.split()[1:])]) for r in w.lines("spk2utt")]
        w.write_lines("spk2utt", spk2utt)
        for table in ("utt2dur", "utt2num_samples"):
            (w.data / table).unlink(missing_ok=True)
        return {"seg": f"{ids[0]}-seg"}

    return build


BAD_SEGMENTS = {
    "end-before-start": "{utt}-seg {utt} 0.50 0.20",
    "past-recording-end": "{utt}-seg {utt} 0.10 99.0",
    "not-a-number": "{utt}-seg {utt} zero 0.30",
    "missing-field": "{utt}-seg {utt} 0.10",
    "unknown-recording": "{utt}-seg nosuchrecording 0.00 0.30",
}
for defect, line in BAD_SEGMENTS.items():
    case(f"segments/{defect}/validate", segments(line), VALIDATE, "{data}/segments:1", "{seg}")
for defect in ("end-before-start", "past-recording-end"):
    case(f"segments/{defect}/extract", segments(BAD_SEGMENTS[defect]), EXTRACT, "{data}/segments:1", "{seg}")
    case(f"segments/{defect}/features-stats", segments(BAD_SEGMENTS[defect]), STATS, "{data}/segments:1", "{seg}")
case("segments/not-a-number/extract", segments(BAD_SEGMENTS["not-a-number"]), EXTRACT, "{data}/segments:1")

# ----------------------------------------------------------------------------- configs


def config(edit: Callable[[str], str], key_line: str) -> Callable[[World], dict[str, object]]:
    """The mspm-ast-tiny preset with ``edit`` applied; ``key_line`` is the text of the line that must be named."""

    def build(w: World) -> dict[str, object]:
        text = edit(preset_path("mspm-ast-tiny").read_text(encoding="utf-8"))
        path = w.bad / "config.yaml"
        path.write_text(text, encoding="utf-8")
        number = next(i for i, line in enumerate(text.splitlines(), start=1) if key_line in line)
        return {"config": path, "line": number}

    return build


CONFIG_DEFECTS = {
    "unknown-key": (
        lambda t: t.replace("  weight_decay: 0.01", "  weight_decay: 0.01\n  wieght_decay: 0.1"),
        "wieght_decay",
    ),
    "wrong-type": (lambda t: t.replace("  max_steps: 20000", "  max_steps: many"), "  max_steps: many"),
    "out-of-range": (lambda t: t.replace("  lr: 5.0e-4", "  lr: -1e-3"), "  lr:"),
    "yaml-error": (lambda t: t.replace("  lr: 5.0e-4", "  lr: 5.0e-4: 3"), "  lr:"),
    "yaml-error-unclosed": (lambda t: t.replace("  lr: 5.0e-4", "  lr: [5.0e-4"), "  betas:"),
    "impossible-mask-ratio": (lambda t: t.replace("      ratio: 0.75", "      ratio: 1.0"), "ratio: 1.0"),
    "unknown-encoder-override": (
        lambda t: t.replace("      kind: patch", "      kind: patch\n      widht: 3"),
        "widht",
    ),
}
for defect, (edit, key_line) in CONFIG_DEFECTS.items():
    case(f"config/{defect}/pretrain", config(edit, key_line), PRETRAIN_CONFIG, "{config}:{line}")


def yaml_file(text: str, key_line: str) -> Callable[[World], dict[str, object]]:
    def build(w: World) -> dict[str, object]:
        path = w.bad / "config.yaml"
        path.write_text(text, encoding="utf-8")
        number = next(i for i, line in enumerate(text.splitlines(), start=1) if key_line in line)
        return {"config": path, "line": number}

    return build


case(
    "config/unknown-key/kmeans-fit",
    yaml_file("features: mfcc\nkmeans:\n  n_clusterz: 3\n", "n_clusterz"),
    [*KMEANS, "--config", "{config}"],
    "{config}:{line}",
)
case(
    "config/wrong-type/er-train",
    yaml_file("max_steps: 3\nlr: fast\n", "lr:"),
    [*ER_TRAIN, "--config", "{config}"],
    "{config}:{line}",
)
case("config/not-a-mapping/pretrain", yaml_file("- data\n- encoder\n", "data"), PRETRAIN_CONFIG, "{config}")
case("config/missing/pretrain", lambda w: {"config": w.bad / "nope.yaml"}, PRETRAIN_CONFIG, "{config}")

# ----------------------------------------------------------------------------- --set


for defect, item, named in [
    ("unknown-key", "optim.lrr=1", "optim.lrr"),
    ("not-key-value", "optim.lr", "optim.lr"),
    ("wrong-type", "optim.lr=fast", "optim.lr"),
    ("invalid-yaml", "optim.betas=[0.9", "optim.betas"),
    ("out-of-range", "optim.lr=-1e-3", "optim.lr"),
    ("impossible-mask", "objective.config.mask.ratio=1.0", "mask"),
]:
    case(f"set/{defect}/pretrain", nothing, [*PRETRAIN, "--set", item], named)
case("set/unknown-key/kmeans-fit", nothing, [*KMEANS, "--set", "kmeans.nope=1"], "kmeans.nope")
case("set/wrong-type/er-train", nothing, [*ER_TRAIN, "--set", "max_steps=many"], "max_steps")
case(
    "set/unknown-key/features-stats",
    nothing,
    [*STATS, "--config", "mspm-ast-tiny", "--set", "data.nope=1"],
    "data.nope",
)

# ----------------------------------------------------------------------------- checkpoints


def checkpoint(make: Callable[[World], Path]) -> Callable[[World], dict[str, object]]:
    def build(w: World) -> dict[str, object]:
        return {"ckpt": make(w)}

    return build


CHECKPOINT_DEFECTS: dict[str, Callable[[World], Path]] = {
    "truncated": World.checkpoint_truncated,
    "random-bytes": World.checkpoint_random,
    "malicious-pickle": World.checkpoint_malicious,
    "malicious-bare-pickle": lambda w: w.checkpoint_malicious(zipped=False),
}
EXTRACT_MODEL = ["extract", "--model", "{ckpt}", "--data", "{data}", "-o", "{out}", "--device", "cpu"]
for defect, make in CHECKPOINT_DEFECTS.items():
    case(f"checkpoint/{defect}/extract", checkpoint(make), EXTRACT_MODEL, "{ckpt}")
for defect in ("truncated", "random-bytes", "malicious-pickle"):
    case(
        f"checkpoint/{defect}/interop-inspect",
        checkpoint(CHECKPOINT_DEFECTS[defect]),
        ["interop", "inspect", "{ckpt}"],
        "{ckpt}",
    )
case(
    "checkpoint/malicious-pickle/export",
    checkpoint(World.checkpoint_malicious),
    ["export", "--model", "{ckpt}", "-o", "{out}/enc.pt"],
    "{ckpt}",
)
case(
    "checkpoint/malicious-in-run-dir/extract",
    lambda w: {"ckpt": w.run_with(w.checkpoint_malicious()) / "ckpt-00000001.pt", "rundir": w.bad / "run"},
    ["extract", "--model", "{rundir}", "--data", "{data}", "-o", "{out}", "--device", "cpu"],
    "{ckpt}",
)
case(
    "checkpoint/malicious-pickle/sv-embed",
    checkpoint(World.checkpoint_malicious),
    [*SV_EMBED[:3], "-u", "{ckpt}", *SV_EMBED[5:]],
    "{ckpt}",
)
case(
    "checkpoint/random-bytes/er-train",
    checkpoint(World.checkpoint_random),
    [*ER_TRAIN[:3], "-u", "{ckpt}", *ER_TRAIN[5:]],
    "{ckpt}",
)
case(
    "checkpoint/malicious-segmentation/diarization-diarize",
    checkpoint(World.checkpoint_malicious),
    [
        "diarization",
        "diarize",
        "{data}/wav/spk01-0001.wav",
        "--segmentation",
        "{ckpt}",
        "-m",
        "{run}",
        "-o",
        "{out}/out.rttm",
    ],
    "{ckpt}",
)

# ----------------------------------------------------------------------------- CLI paths and outputs


def existing_out(w: World) -> dict[str, object]:
    w.out.mkdir()
    (w.out / "keep.txt").write_text("an earlier result\n", encoding="utf-8")
    return {}


READ_ONLY = "/sys/audiossl-catalogue-out"  # sysfs refuses new entries, even to root
case("cli/missing-data-dir/extract", nothing, [*EXTRACT[:4], "{tmp}/nodata", *EXTRACT[5:]], "{tmp}/nodata")
case("cli/missing-data-dir/validate", nothing, ["data", "validate", "{tmp}/nodata"], "{tmp}/nodata")
case("cli/missing-data-dir/pretrain", nothing, [*PRETRAIN[:4], "{tmp}/nodata", *PRETRAIN[5:]], "{tmp}/nodata")
case("cli/missing-model/extract", nothing, ["extract", "--model", "{tmp}/nomodel.pt", *EXTRACT[3:]], "{tmp}/nomodel.pt")
case("cli/missing-upstream/sv-embed", nothing, [*SV_EMBED[:3], "-u", "{tmp}/nomodel", *SV_EMBED[5:]], "{tmp}/nomodel")
case("cli/existing-output/extract", existing_out, EXTRACT, "{out}")
case("cli/existing-run-without-resume/pretrain", nothing, [*PRETRAIN[:6], "{run}", *PRETRAIN[7:]], "{run}")
case("cli/existing-run-without-resume/er-train", nothing, [*ER_TRAIN[:5], "{er_run}", *ER_TRAIN[6:]], "{er_run}")
case("cli/read-only-output/extract", nothing, [*EXTRACT[:6], READ_ONLY, *EXTRACT[7:]], READ_ONLY)
case("cli/read-only-output/features-stats", nothing, [*STATS[:4], READ_ONLY + "/stats.npz"], READ_ONLY)
case("cli/read-only-output/pretrain", nothing, [*PRETRAIN[:6], READ_ONLY, *PRETRAIN[7:]], READ_ONLY)
case(
    "cli/read-only-output/sv-make-trials",
    nothing,
    ["sv", "make-trials", "{data}", "-o", READ_ONLY + "/trials"],
    READ_ONLY,
)

# ----------------------------------------------------------------------------- plugin inputs


def trials(rows: list[str]) -> Callable[[World], dict[str, object]]:
    """A trials file over the corpus's ids (``{a}``, ``{b}`` the first two), and an embeddings archive."""

    def build(w: World) -> dict[str, object]:
        ids = w.ids()
        path = w.bad / "trials"
        path.write_text("".join(row.format(a=ids[0], b=ids[1], c=ids[3]) + "\n" for row in rows), encoding="utf-8")
        return {"trials": path}

    return build


SV_SCORE = ["sv", "score", "{trials}", "-e", "{embeddings}", "-o", "{out}/scores"]
case("plugin/sv/trials-missing-field", trials(["1 {a} {b}", "0 {a}"]), SV_SCORE, "{trials}:2")
case("plugin/sv/trials-bad-label", trials(["1 {a} {b}", "maybe {a} {c}"]), SV_SCORE, "{trials}:2")
case(
    "plugin/sv/trials-unknown-utterance", trials(["1 {a} {b}", "0 {a} nosuchutt"]), SV_SCORE, "{trials}:2", "nosuchutt"
)
case("plugin/sv/trials-missing", lambda w: {"trials": w.bad / "no-trials"}, SV_SCORE, "{trials}")
case(
    "plugin/sv/make-trials-no-utt2spk",
    remove("utt2spk"),
    ["sv", "make-trials", "{data}", "-o", "{out}/trials"],
    "{data}/utt2spk",
)
case("plugin/er/missing-labels", remove("utt2emo"), ER_TRAIN, "{data}/utt2emo")
case("plugin/er/label-missing-for-utterance", drop_line("utt2emo"), ER_TRAIN, "{data}/utt2emo", "{utt}")


def unseen_emotion(w: World) -> dict[str, object]:
    w.set_line("utt2emo", 2, f"{w.ids()[1]} furious")
    return {}


case(
    "plugin/er/unseen-class",
    unseen_emotion,
    ["er", "evaluate", "{er_run}", "{data}", "-o", "{out}"],
    "{data}/utt2emo:2",
    "furious",
)
case("plugin/asr/missing-labels", remove("text"), ASR_TRAIN, "{data}/text")


def hypotheses(rows: list[str], raw: bytes | None = None) -> Callable[[World], dict[str, object]]:
    def build(w: World) -> dict[str, object]:
        ids = w.ids()
        path = w.bad / "hyp.txt"
        if raw is not None:
            path.write_bytes(raw)
        else:
            path.write_text("".join(row.format(a=ids[0]) + "\n" for row in rows), encoding="utf-8")
        return {"hyp": path}

    return build


def stray_hypothesis(w: World) -> dict[str, object]:
    path = w.bad / "hyp.txt"
    path.write_text((w.data / "text").read_text(encoding="utf-8") + "nosuchutt fish\n", encoding="utf-8")
    return {"hyp": path, "line": len(w.ids()) + 1}


case("plugin/asr/score-missing-utterance", hypotheses(["{a} wine"]), ["asr", "score", "{data}", "{hyp}"], "{hyp}")
case(
    "plugin/asr/score-unknown-utterance",
    stray_hypothesis,
    ["asr", "score", "{data}", "{hyp}"],
    "{hyp}:{line}",
    "nosuchutt",
)
case("plugin/asr/score-non-utf8", hypotheses([], raw=b"x caf\xe9\n"), ["asr", "score", "{data}", "{hyp}"], "{hyp}:1")
case(
    "plugin/vc/convert-missing-source",
    nothing,
    [
        "vc",
        "convert",
        "{tmp}/nosource.wav",
        "--target",
        "{data}",
        "--model",
        "{run}",
        "--vocoder",
        "{tmp}/novocoder",
        "-o",
        "{out}/x.wav",
    ],
    "{tmp}/no",
)


def rttm(reference: str) -> Callable[[World], dict[str, object]]:
    def build(w: World) -> dict[str, object]:
        ref = w.bad / "ref.rttm"
        ref.write_text(reference, encoding="utf-8")
        hyp = w.bad / "hyp.rttm"
        hyp.write_text("SPEAKER rec 1 0.00 1.00 <NA> <NA> A <NA> <NA>\n", encoding="utf-8")
        return {"ref": ref, "hyp": hyp}

    return build


DIAR_EVAL = ["diarization", "evaluate", "-r", "{ref}", "-H", "{hyp}", "-o", "{out}/der.json"]
case(
    "plugin/diarization/rttm-bad-line",
    rttm("SPEAKER rec 1 0.00 1.00 <NA> <NA> A <NA> <NA>\nSPEAKER rec 1 zero\n"),
    DIAR_EVAL,
    "{ref}:2",
)
case(
    "plugin/diarization/rttm-missing",
    lambda w: {"ref": w.bad / "none.rttm", "hyp": w.bad / "none2.rttm"},
    DIAR_EVAL,
    "{bad}/none",
)
