#!/usr/bin/env bash
# Speaker verification on an upstream (plugins/sv): a trial list over the test speakers, an attentive
# statistics head trained with AAM-softmax, cosine scoring (mean subtraction / AS-norm), EER, minDCF,
# DET curve; and the same trials scored on the frozen upstream without training, as a reference.
#   1 trial list                 audiossl sv make-trials   [unless TEST/trials exists or --trials]
#   2 train speaker head         audiossl sv train
#   3 evaluate the trained head  audiossl sv evaluate --run
#   4 evaluate frozen features   audiossl sv evaluate --upstream
help_message="usage: recipes/sv.sh --train_data DIR --test_data DIR --upstream SPEC --exp_dir DIR [options]

  --train_data DIR     data dir with utt2spk to train on (required)
  --test_data DIR      data dir of the trial utterances (required; unseen speakers for a fair test)
  --upstream SPEC      checkpoint / run dir, random:<ckpt> or fbank[:RATE[:BINS]] (required)
  --trials FILE        VoxCeleb-format trials (label enroll test); default: generated in stage 1
  --num_trials N       size of the generated list (default 2000)
  --train_opts '...'   extra options of 'audiossl sv train' (e.g. '--max-steps 300')
  --frozen true|false  run stage 4 (default true; not for fbank upstreams)
  --stage N --stop_stage M --force true --ngpu N --exp_dir DIR"

train_data=
test_data=
upstream=
trials=
num_trials=2000
train_opts=
frozen=true

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
parse_options "$@"
[ -n "$train_data" ] && [ -n "$test_data" ] && [ -n "$upstream" ] || die "--train_data, --test_data and --upstream are required"
words extra "$train_opts"
device=$(train_device)
if [ -z "$trials" ]; then
    trials=$exp_dir/trials
    run_stage 1 "trial list over $test_data" "$audiossl" sv make-trials "$test_data" -o "$trials" \
        --num-trials "$num_trials"
fi
run_stage 2 "train speaker head on $upstream" "$audiossl" sv train "$train_data" -u "$upstream" -o "$exp_dir/run" \
    --device "$device" "${extra[@]}" $(resume_flag "$exp_dir/run")
run_stage 3 "evaluate the trained head" "$audiossl" sv evaluate "$test_data" --run "$exp_dir/run" \
    --trials "$trials" -o "$exp_dir/eval" --device "$device"
if [ "$frozen" = true ]; then
    run_stage 4 "evaluate frozen $upstream features" "$audiossl" sv evaluate "$test_data" -u "$upstream" \
        --cohort-dir "$train_data" --trials "$trials" -o "$exp_dir/eval_frozen" --device "$device"
fi
log "sv.sh finished: $exp_dir/eval/metrics.json"
