#!/usr/bin/env bash
# SUPERB (Yang et al., 2021) on its public corpora: data preparation of every corpus given, one data
# config, then every (upstream, task) pair trained and scored alike, and the leaderboard.
#
#   1 Speech Commands (KS, 12 classes)          audiossl superb prepare speech-commands   [--speech_commands]
#   2 Fluent Speech Commands (IC)                audiossl superb prepare fluent-speech-commands [--fluent]
#   3 VoxCeleb1 (SID iden_split, SV veri_test2)  audiossl superb prepare voxceleb1         [--voxceleb1]
#   4 IEMOCAP (ER, one session held out)         audiossl superb prepare iemocap           [--iemocap]
#   5 LibriSpeech (ASR; PR with --lexicon)       audiossl superb prepare librispeech       [--librispeech]
#   6 QUESST 2014 (QbE, English)                 audiossl superb prepare quesst14          [--quesst]
#   7 Voicebank-DEMAND (SE)                      audiossl superb prepare voicebank-demand  [--voicebank]
#   8 Libri2Mix (SS, wav16k/min)                 audiossl superb prepare libri2mix         [--librimix]
#   9 every pair + leaderboard                   audiossl superb -u ... --data-config DATA_DIR/superb.yaml
# A corpus left empty is skipped (its task is not run). None of these corpora is downloaded here: each
# is fetched from its publisher (Speech Commands, Fluent Speech Commands, LibriSpeech, QUESST 2014,
# Voicebank-DEMAND freely; VoxCeleb and IEMOCAP on request; Libri2Mix is generated with its scripts).
# Nothing to download: `--synthetic true` runs every task on the embedded synthetic corpus instead.
help_message="usage: egs/superb/superb1/run.sh --upstreams 'fbank NAME=CKPT ...' [corpus options] [options]

  --upstreams '...'       upstream specs (fbank, fbank-raw, random:CKPT, a run dir or checkpoint, NAME=SPEC)
  --tasks LIST            comma-separated tasks (default: every task whose corpus was prepared)
  --speech_commands DIR   speech_commands_v0.01 (or v0.02) folder; --sc_test_set DIR its separate test set
  --fluent DIR            fluent_speech_commands_dataset (or its parent)
  --voxceleb1 DIR         VoxCeleb1 wav folder; --iden_split FILE and/or --trials FILE (veri_test2.txt)
  --iemocap DIR           IEMOCAP_full_release; --fold SesNN held out (default Ses01)
  --librispeech DIR       LibriSpeech (train-clean-100, dev-clean, test-clean); --lexicon FILE for PR
  --quesst DIR            quesst14Database
  --voicebank DIR         Voicebank-DEMAND (clean_/noisy_ trainset_28spk_wav, testset_wav)
  --librimix DIR          Libri2Mix (wav16k/min/{train-100,dev,test})
  --synthetic true        the embedded synthetic corpus instead of the corpora above
  --superb_opts '...'     options of 'audiossl superb' (default: --max-steps 20000 --budget-minutes 60)
  --data_dir DIR          where the data dirs and superb.yaml go (default data)
  --stage N --stop_stage M --force true --exp_dir DIR (default exp)"

upstreams=fbank
tasks=
speech_commands=
sc_test_set=
fluent=
voxceleb1=
iden_split=
trials=
iemocap=
fold=Ses01
librispeech=
lexicon=
quesst=
voicebank=
librimix=
synthetic=false
superb_opts="--max-steps 20000 --budget-minutes 60"
data_dir=data

cd "$(dirname "$0")"
recipes=../../../recipes
. "$recipes/path.sh"
. "$recipes/lib.sh"
parse_options "$@"

config=$data_dir/superb.yaml
prepare() {  # prepare STAGE TITLE CORPUS SOURCE OUT [options]: one corpus into the data config, when given
    local n=$1 title=$2 corpus=$3 source=$4 out=$5
    shift 5
    if [ -z "$source" ]; then
        [ "$n" -lt "$stage" ] || [ "$n" -gt "$stop_stage" ] || log "stage $n: $title - no corpus given, skipped"
        return 0
    fi
    run_stage "$n" "$title" "$audiossl" superb prepare "$corpus" "$source" "$out" --data-config "$config" "$@"
}

if [ "$synthetic" = true ]; then
    run_stage 1 "synthetic corpus: every task" "$audiossl" superb prepare-synth "$data_dir"
else
    sc=()
    [ -z "$sc_test_set" ] || sc=(--test-set "$sc_test_set")
    prepare 1 "Speech Commands (ks)" speech-commands "$speech_commands" "$data_dir/ks" "${sc[@]}"
    prepare 2 "Fluent Speech Commands (ic)" fluent-speech-commands "$fluent" "$data_dir/ic"
    vox=()
    [ -z "$iden_split" ] || vox+=(--iden-split "$iden_split")
    [ -z "$trials" ] || vox+=(--trials "$trials")
    prepare 3 "VoxCeleb1 (sid, sv)" voxceleb1 "$voxceleb1" "$data_dir/voxceleb1" "${vox[@]}"
    prepare 4 "IEMOCAP (er, $fold held out)" iemocap "$iemocap" "$data_dir/iemocap" --fold "$fold"
    libri=()
    [ -z "$lexicon" ] || libri=(--lexicon "$lexicon")
    prepare 5 "LibriSpeech (asr, pr)" librispeech "$librispeech" "$data_dir/librispeech" "${libri[@]}"
    prepare 6 "QUESST 2014 (qbe)" quesst14 "$quesst" "$data_dir/quesst14"
    prepare 7 "Voicebank-DEMAND (se)" voicebank-demand "$voicebank" "$data_dir/voicebank"
    prepare 8 "Libri2Mix (ss)" libri2mix "$librimix" "$data_dir/libri2mix"
fi
[ "$stop_stage" -lt 9 ] || [ -f "$config" ] || die "no corpus prepared: give at least one corpus folder or --synthetic true"
ups=()
for spec in $upstreams; do ups+=(-u "$spec"); done
task_opts=()
[ -z "$tasks" ] || task_opts=(--tasks "$tasks")
# shellcheck disable=SC2086  # superb_opts is a list of words
run_stage 9 "every (upstream, task) pair + leaderboard" "$audiossl" superb "${ups[@]}" "${task_opts[@]}" \
    --data-config "$config" -o "$exp_dir/superb" $superb_opts
log "done: $exp_dir/superb/leaderboard.md"
