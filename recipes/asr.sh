#!/usr/bin/env bash
# CTC speech recognition on an upstream (plugins/asr): train a CTC head with a tokenizer learned from
# the training text, decode the test set greedily and (with --lexicon) by beam search, WER/CER.
#   1 train                    audiossl asr train
#   2 greedy decode + score    audiossl asr decode
#   3 beam decode + score      audiossl asr decode --beam   [only with --lexicon]
help_message="usage: recipes/asr.sh --train_data DIR --test_data DIR --upstream SPEC --exp_dir DIR [options]

  --train_data DIR     data dir with text to train on (required)
  --test_data DIR      data dir to decode (with text: scored) (required)
  --upstream SPEC      checkpoint / run dir, random:<ckpt> or fbank[:RATE[:BINS]] (required)
  --train_opts '...'   extra options of 'audiossl asr train' (e.g. '--tokenizer unigram --vocab-size 100')
  --lexicon FILE       word list for beam search (stage 3)
  --lm FILE            KenLM model for beam search (with --lexicon)
  --stage N --stop_stage M --force true --ngpu N --exp_dir DIR"

train_data=
test_data=
upstream=
train_opts=
lexicon=
lm=

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
parse_options "$@"
[ -n "$train_data" ] && [ -n "$test_data" ] && [ -n "$upstream" ] || die "--train_data, --test_data and --upstream are required"
words extra "$train_opts"
device=$(train_device)

run_stage 1 "train CTC head on $upstream" "$audiossl" asr train "$train_data" -u "$upstream" -o "$exp_dir/run" \
    --device "$device" "${extra[@]}" $(resume_flag "$exp_dir/run")
run_stage 2 "greedy decoding of $test_data" "$audiossl" asr decode "$exp_dir/run" "$test_data" \
    -o "$exp_dir/decode_greedy" --greedy --device "$device"
if [ -n "$lexicon" ]; then
    beam=(--beam --lexicon "$lexicon")
    [ -z "$lm" ] || beam+=(--lm "$lm")
    run_stage 3 "beam decoding with $lexicon" "$audiossl" asr decode "$exp_dir/run" "$test_data" \
        -o "$exp_dir/decode_beam" "${beam[@]}" --device "$device"
fi
log "asr.sh finished: $exp_dir/decode_*/metrics.json"
