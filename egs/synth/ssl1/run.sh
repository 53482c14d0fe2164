#!/usr/bin/env bash
# The embedded default corpus end to end (README's `make demo`): generate the synthetic corpus,
# pretrain an encoder, evaluate it on every downstream plugin, write a report.
#
#   1 synthetic corpus                     audiossl data synth
#   2 train/test split (per speaker)       audiossl data split --by utterance   (asr, er, vc)
#   3 unseen-speaker split                 audiossl data split --by speaker     (sv)
#   4 pretraining                          recipes/ssl.sh
#   5 ASR: CTC head, greedy + lexicon beam recipes/asr.sh
#   6 speaker verification                 recipes/sv.sh
#   7 emotion recognition                  recipes/er.sh
#   8 voice conversion                     recipes/vc.sh
#   9 report (Markdown + PNGs)             audiossl report
# About 6 minutes on 2 idle CPU cores (measured 5 m 36 s); --smoke true runs every stage on a handful of
# utterances.
help_message="usage: egs/synth/ssl1/run.sh [options]

  --data_dir DIR        where the data dirs go (default data)
  --smoke true          every stage on a few utterances with a few steps (tests, quick checks)
  --speakers N          synthetic speakers (default 8)
  --utts_per_speaker N  utterances per speaker (default 24)
  --config NAME|YAML    pretraining preset (default mspm-ast-tiny, read as stacked frames)
  --pretrain_steps N    pretraining steps (default 800)
  --downstream_steps N  training steps of the SV and ER heads (default 300)
  --asr_steps N         training steps of the CTC head (default 600)
  --vocoder_steps N     vocoder training steps (default 600)
  --stage N --stop_stage M --force true --nj N --ngpu N --exp_dir DIR (default exp)"

smoke=false
data_dir=data
speakers=8
utts_per_speaker=24
config=mspm-ast-tiny
pretrain_steps=800
downstream_steps=300
asr_steps=600
vocoder_steps=600

cd "$(dirname "$0")"
recipes=../../../recipes
. "$recipes/path.sh"
. "$recipes/lib.sh"
parse_options "$@"

if [ "$smoke" = true ]; then
    speakers=4
    utts_per_speaker=8
    pretrain_steps=2
    downstream_steps=2
    asr_steps=2
    vocoder_steps=2
fi
data=$data_dir
# Stacked fbank frames (SSAST's frame variant), 4 blocks: what 2 CPU cores pretrain in a few minutes.
pretrain_opts="encoder.overrides.input.kind=frame encoder.overrides.input.frame_stack=2
  encoder.overrides.num_layers=4 data.max_seconds_per_batch=30 run.max_steps=$pretrain_steps
  run.checkpoint_every=$(((pretrain_steps + 1) / 2)) run.log_every=$(((pretrain_steps + 9) / 10))
  optim.warmup_steps=$(((pretrain_steps + 9) / 10)) optim.lr=1.0e-3 run.tensorboard=false"
upstream=$exp_dir/ssl/iter1/pretrain
common=(--ngpu "$ngpu" --nj "$nj" --force "$force")
head_opts="--max-steps $downstream_steps --batch-seconds 30"

run_stage 1 "synthetic corpus ($speakers speakers x $utts_per_speaker)" "$audiossl" data synth "$data/all" \
    --speakers "$speakers" --utts-per-speaker "$utts_per_speaker"
run_stage 2 "train/test split by utterance" "$audiossl" data split "$data/all" "$data" \
    --parts train=0.75,test=0.25 --by utterance
run_stage 3 "unseen-speaker split" "$audiossl" data split "$data/all" "$data/sv" --parts train=0.5,test=0.5 --by speaker
run_stage 4 "pretraining ($config)" bash "$recipes/ssl.sh" --train_data "$data/train" --exp_dir "$exp_dir/ssl" \
    --config "$config" --pretrain_opts "$pretrain_opts" "${common[@]}"
run_stage 5 "ASR" bash "$recipes/asr.sh" --train_data "$data/train" --test_data "$data/test" --upstream "$upstream" \
    --train_opts "--max-steps $asr_steps --batch-seconds 30 --head bilstm --hidden 64 --layers 1 --lr 3e-3" \
    --lexicon "$data/all/lexicon.txt" \
    --exp_dir "$exp_dir/asr" "${common[@]}"
run_stage 6 "speaker verification" bash "$recipes/sv.sh" --train_data "$data/sv/train" --test_data "$data/sv/test" \
    --upstream "$upstream" --train_opts "$head_opts" --exp_dir "$exp_dir/sv" "${common[@]}"
run_stage 7 "emotion recognition" bash "$recipes/er.sh" --train_data "$data/train" --test_data "$data/test" \
    --upstream "$upstream" --train_opts "$head_opts --class-weights" --exp_dir "$exp_dir/er" "${common[@]}"
run_stage 8 "voice conversion" bash "$recipes/vc.sh" --train_data "$data/train" --test_data "$data/test" \
    --model "$upstream" --vocoder_opts "--kind mel-gl --steps $vocoder_steps" --min_seconds 1 --pairs 4 \
    --sv_run "$exp_dir/sv/run" --asr_run "$exp_dir/asr/run" --exp_dir "$exp_dir/vc" "${common[@]}"
run_stage 9 "report" "$audiossl" report "$exp_dir" -o "$exp_dir/report.md" --title "audiossl on the synthetic corpus"
log "done: $exp_dir/report.md"
