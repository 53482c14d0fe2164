#!/usr/bin/env bash
# Voice conversion by kNN matching on an upstream's features (plugins/vc): train a vocoder from the
# features to audio, convert one example with its spectrograms, then evaluate cross-speaker pairs
# (target-speaker similarity; content WER when an ASR run is given).
#   1 train vocoder         audiossl vc train-vocoder
#   2 convert one example   audiossl vc convert
#   3 evaluate pairs        audiossl vc evaluate
help_message="usage: recipes/vc.sh --train_data DIR --test_data DIR --model CKPT --exp_dir DIR [options]

  --train_data DIR       audio to train the vocoder on; also the target pools (required)
  --test_data DIR        data dir with utt2spk (and text) whose utterances are converted (required)
  --model CKPT           pretrained audiossl checkpoint or run dir (required)
  --vocoder_opts '...'   extra options of 'audiossl vc train-vocoder' (e.g. '--kind hifigan --steps 2000')
  --source WAV           the example to convert in stage 2 (default: first utterance of --test_data)
  --target_speaker SPK   its target speaker from --train_data (default: a speaker other than the source's)
  --pairs N              cross-speaker pairs evaluated in stage 3 (default 8)
  --min_seconds S        smallest target pool accepted (default 5)
  --sv_run DIR --asr_run DIR  trained sv / asr runs used to judge the conversions
  --stage N --stop_stage M --force true --ngpu N --exp_dir DIR"

train_data=
test_data=
model=
vocoder_opts=
source=
target_speaker=
pairs=8
min_seconds=5
sv_run=
asr_run=

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
parse_options "$@"
[ -n "$train_data" ] && [ -n "$test_data" ] && [ -n "$model" ] || die "--train_data, --test_data and --model are required"
words extra "$vocoder_opts"
device=$(train_device)
if [ -z "$source" ]; then
    read -r source_utt source < <(head -n 1 "$test_data/wav.scp") || die "no utterance in $test_data/wav.scp"
    source_spk=$(awk -v u="$source_utt" '$1 == u {print $2}' "$test_data/utt2spk")
fi
if [ -z "$target_speaker" ]; then
    target_speaker=$(awk -v s="${source_spk:-}" '$1 != s {print $1; exit}' "$train_data/spk2utt")
fi

run_stage 1 "train vocoder on $train_data" "$audiossl" vc train-vocoder --model "$model" --data "$train_data" \
    --out "$exp_dir/vocoder" --device "$device" "${extra[@]}" $(resume_flag "$exp_dir/vocoder")
run_stage 2 "convert $source to speaker $target_speaker" "$audiossl" vc convert "$source" --model "$model" \
    --vocoder "$exp_dir/vocoder" --target "$train_data" --target-speaker "$target_speaker" \
    --min-seconds "$min_seconds" -o "$exp_dir/example/converted.wav" --plot "$exp_dir/example/spectrograms.png"
judges=()
[ -z "$sv_run" ] || judges+=(--sv-run "$sv_run")
[ -z "$asr_run" ] || judges+=(--asr-run "$asr_run")
run_stage 3 "evaluate $pairs cross-speaker pairs" "$audiossl" vc evaluate --model "$model" \
    --vocoder "$exp_dir/vocoder" --data "$test_data" --pool-data "$train_data" --pairs "$pairs" \
    --min-seconds "$min_seconds" --out "$exp_dir/eval" "${judges[@]}"
log "vc.sh finished: $exp_dir/eval/metrics.json"
