"""SUPERB corpus preparers on fake releases in their real layouts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import fake_superb_corpora as fake  # noqa: E402

from audiossl.cli.main import main  # noqa: E402
from audiossl.data.dataset import AudioDataset  # noqa: E402
from audiossl.data.kaldi import DataDir, read_table  # noqa: E402
from audiossl.errors import DataError  # noqa: E402
from audiossl.superb import corpora  # noqa: E402
from audiossl.superb.dataconfig import load_data_config  # noqa: E402


def test_speech_commands_twelve_classes_lists_and_silence(tmp_path):
    root = fake.speech_commands(tmp_path / "sc")
    parts = corpora.prepare_speech_commands(root, tmp_path / "out")
    train, dev, test = (DataDir.load(parts[p]) for p in ("train", "dev", "test"))
    assert dev.labels["kw"]["a1b2c3d4-yes-1"] == "yes" and dev.labels["kw"]["0f0e0d0c-bed-1"] == "_unknown_"
    assert set(test.labels["kw"]) >= {"a1b2c3d4-no-1", "0f0e0d0c-yes-1"}
    assert "a1b2c3d4-no-1" not in train.labels["kw"]  # listed for test: not in train
    silence = [u for u, k in train.labels["kw"].items() if k == "_silence_"]
    assert len(silence) == 8  # windows 0-7 of 10 whole seconds (8:1:1)
    dataset = AudioDataset(parts["train"], labels=["kw"])
    item = dataset[dataset.ids.index(silence[0])]
    assert item.waveform.shape[-1] == 16000  # a 1-s window of the noise
    speech = dataset[dataset.ids.index("a1b2c3d4-yes-0")]
    assert speech.waveform.shape[-1] == 4800  # whole clip through its full-length segment


def test_speech_commands_missing_lists_name_the_file(tmp_path):
    (tmp_path / "sc").mkdir()
    with pytest.raises(DataError, match="validation_list.txt"):
        corpora.prepare_speech_commands(tmp_path / "sc", tmp_path / "out")


def test_fluent_speech_commands_intents(tmp_path):
    parts = corpora.prepare_fluent_speech_commands(fake.fluent_speech_commands(tmp_path / "fsc"), tmp_path / "out")
    train, test = DataDir.load(parts["train"]), DataDir.load(parts["test"])
    assert sorted(train.labels["intent"].values()) == ["activate_lights_none", "increase_heat_kitchen"]
    (utt,) = test.utterance_ids
    assert test.text[utt] == "switch on the lights" and utt.startswith("4BrX8aDqK2cLZRYl-")


def test_fluent_missing_column_names_the_line(tmp_path):
    root = fake.fluent_speech_commands(tmp_path / "fsc")
    csv_path = root / "fluent_speech_commands_dataset" / "data" / "train_data.csv"
    csv_path.write_text(csv_path.read_text().replace(",location", ",place"))
    with pytest.raises(DataError, match=r"train_data.csv:2.*location"):
        corpora.prepare_fluent_speech_commands(root, tmp_path / "out")


def test_voxceleb1_identification_split(tmp_path):
    root, split = fake.voxceleb1(tmp_path / "vox")
    parts = corpora.prepare_voxceleb1_sid(root, tmp_path / "out", split)
    assert DataDir.load(parts["train"]).utterance_ids == ["id10001-1zcIwhmdeo4-00001", "id10002-1zcIwhmdeo4-00001"]
    assert read_table(parts["test"] / "utt2spk") == {
        "id10001-1zcIwhmdeo4-00003": "id10001",
        "id10002-1zcIwhmdeo4-00002": "id10002",
    }
    split.write_text(split.read_text() + "4 id10001/1zcIwhmdeo4/00001.wav\n")
    with pytest.raises(DataError, match=r"iden_split.txt:6"):
        corpora.prepare_voxceleb1_sid(root, tmp_path / "o2", split)


def test_librispeech_phones_from_a_cmudict_style_lexicon(tmp_path):
    data = DataDir(
        wav_scp={"103-1-0001": "/a.flac", "103-1-0002": "/b.flac"},
        utt2spk={"103-1-0001": "103", "103-1-0002": "103"},
        text={"103-1-0001": "HELLO WORLD", "103-1-0002": "HELLO ZEBRA"},
    )
    data.save(tmp_path / "dev")
    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_text(";;; comment\nHELLO HH AH0 L OW1\nHELLO(2) HH EH0 L OW1\nWORLD W ER1 L D\n")
    _, dropped = corpora.add_phones(tmp_path / "dev", lexicon)
    assert dropped == 1
    assert read_table(tmp_path / "dev" / "text.phn") == {"103-1-0001": "HH AH L OW W ER L D"}
    assert DataDir.load(tmp_path / "dev").utterance_ids == ["103-1-0001"]  # every table filtered


def test_quesst14_documents_know_their_queries(tmp_path):
    from audiossl_qbe.queries import document_truth, read_query_list

    made = corpora.prepare_quesst14(fake.quesst14(tmp_path / "q"), tmp_path / "out")
    docs = DataDir.load(made["docs"])
    assert docs.utterance_ids == ["quesst14_00001", "quesst14_00002", "quesst14_00003"]  # English only
    queries = read_query_list(made["dev_queries"])
    ids, truth = document_truth(made["docs"], queries)
    assert truth.tolist() == [[True, False, True], [False, True, False]]


def test_libri2mix_sources_and_speakers(tmp_path):
    parts = corpora.prepare_libri2mix(fake.libri2mix(tmp_path / "lm"), tmp_path / "out")
    data = DataDir.load(parts["train"])
    utt = "103-1240-0000_1034-121119-0001"
    assert data.utt2spk[utt] == "103" and data.labels["spk2"][utt] == "1034"
    assert data.labels["src2"][utt].endswith(f"train-100/s2/{utt}.wav")


def test_voicebank_demand_pairs(tmp_path):
    pytest.importorskip("audiossl_enhance", reason="Voicebank-DEMAND pairs go through the enhance plugin")
    parts = corpora.prepare_voicebank_demand(fake.voicebank_demand(tmp_path / "vb"), tmp_path / "out")
    data = DataDir.load(parts["train"])
    assert data.utterance_ids == ["p226_001", "p226_002", "p287_001", "p287_002"]
    assert set(data.labels["clean"]) == set(data.utterance_ids)


def test_cli_prepare_adds_entries_to_a_data_config(tmp_path):
    config = tmp_path / "superb.yaml"
    root = fake.speech_commands(tmp_path / "sc")
    assert (
        main(["superb", "prepare", "speech-commands", str(root), str(tmp_path / "ks"), "--data-config", str(config)])
        == 0
    )
    fsc = fake.fluent_speech_commands(tmp_path / "fsc")
    assert (
        main(
            [
                "superb",
                "prepare",
                "fluent-speech-commands",
                str(fsc),
                str(tmp_path / "ic"),
                "--data-config",
                str(config),
            ]
        )
        == 0
    )
    tasks = load_data_config(config)
    assert (
        list(tasks) == ["ks", "ic"] and tasks["ks"].label == "utt2kw" and tasks["ic"].test == (tmp_path / "ic" / "test")
    )
    assert main(["superb", "prepare", "nonsense", str(root), str(tmp_path / "x")]) == 2


def test_cli_prepare_voxceleb1_and_librispeech(tmp_path):
    config = tmp_path / "superb.yaml"
    root, split = fake.voxceleb1(tmp_path / "vox")
    trials = tmp_path / "veri_test2.txt"
    trials.write_text("1 id10002/1zcIwhmdeo4/00001.wav id10002/1zcIwhmdeo4/00002.wav\n")
    argv = ["superb", "prepare", "voxceleb1", str(root), str(tmp_path / "v"), "--data-config", str(config)]
    assert main([*argv, "--iden-split", str(split), "--trials", str(trials)]) == 0
    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_text("HELLO HH AH0 L OW1\nWORLD W ER1 L D\n")
    libri = fake.librispeech(tmp_path / "ls")
    argv = ["superb", "prepare", "librispeech", str(libri), str(tmp_path / "l"), "--data-config", str(config)]
    assert main([*argv, "--lexicon", str(lexicon)]) == 0
    tasks = load_data_config(config)
    assert list(tasks) == ["sid", "sv", "asr", "pr"]
    assert read_table(tasks["sv"].test / "utt2spk") == {
        "id10002-1zcIwhmdeo4-00001": "id10002",
        "id10002-1zcIwhmdeo4-00002": "id10002",
    }  # the trials' speaker is the test set
    assert read_table(tasks["pr"].test / "text.phn") == {"2001-1240-0000": "HH AH L OW W ER L D"}
    assert tasks["asr"].test == tasks["pr"].test  # shared dirs: the zebra utterance is gone from both
