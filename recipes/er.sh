#!/usr/bin/env bash
# Emotion recognition on an upstream (plugins/er): train a pooled classifier, then score a test set
# (WA = overall accuracy, UA = mean per-class recall, confusion matrix PNG).
#   1 train      audiossl er train
#   2 evaluate   audiossl er evaluate
help_message="usage: recipes/er.sh --train_data DIR --test_data DIR --upstream SPEC --exp_dir DIR [options]

  --train_data DIR     data dir with utt2emo to train on (required)
  --test_data DIR      data dir with utt2emo to score (required)
  --upstream SPEC      checkpoint / run dir, random:<ckpt> or fbank[:RATE[:BINS]] (required)
  --train_opts '...'   extra options of 'audiossl er train' (e.g. '--max-steps 200 --pooling attentive')
  --stage N --stop_stage M --force true --ngpu N --exp_dir DIR"

train_data=
test_data=
upstream=
train_opts=

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
parse_options "$@"
[ -n "$train_data" ] && [ -n "$test_data" ] && [ -n "$upstream" ] || die "--train_data, --test_data and --upstream are required"
words extra "$train_opts"
device=$(train_device)

run_stage 1 "train emotion classifier on $upstream" "$audiossl" er train "$train_data" -u "$upstream" -o "$exp_dir/run" \
    --device "$device" "${extra[@]}" $(resume_flag "$exp_dir/run")
run_stage 2 "evaluate on $test_data" "$audiossl" er evaluate "$exp_dir/run" "$test_data" -o "$exp_dir/eval" --device "$device"
log "er.sh finished: $exp_dir/eval/metrics.json"
