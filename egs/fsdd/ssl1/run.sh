#!/usr/bin/env bash
# Free Spoken Digit Dataset (FSDD, real 8 kHz recordings, 6 speakers): pretrain on the official train
# split, then digit ASR, speaker verification on held-out speakers and cross-speaker voice conversion.
#
#    1 FSDD recordings (download when --fsdd_dir has none)   audiossl data download fsdd
#    2 official train/test split (takes 0-4 are test)        audiossl data prepare-fsdd
#    3 working train set (all; 10 per speaker in smoke)     audiossl data subset
#    4 working test set                                      audiossl data subset
#    5 speaker halves of the train set (SV training)         audiossl data split --by speaker
#    6 the same speaker halves of the test set (SV trials)   audiossl data split --by speaker
#    7 pretraining                                           recipes/ssl.sh
#    8 digit ASR (CTC, greedy + beam over the 10 words)      recipes/asr.sh
#    9 speaker verification on the 3 held-out speakers       recipes/sv.sh
#   10 voice conversion                                      recipes/vc.sh
#   11 report                                                audiossl report
help_message="usage: egs/fsdd/ssl1/run.sh [options]

  --fsdd_dir DIR        FSDD checkout (its recordings/ folder is used); default ../shared/data/fsdd beside
                        the repository when present, else downloads/fsdd (downloaded in stage 1)
  --data_dir DIR        where the data dirs go (default data)
  --smoke true          every stage on a few utterances with a few steps
  --config NAME|YAML    pretraining preset (default mspm-ast-tiny, read as stacked frames)
  --pretrain_steps N    pretraining steps (default 1000)
  --downstream_steps N  training steps of every downstream head (default 400)
  --vocoder_steps N     vocoder training steps (default 600)
  --stage N --stop_stage M --force true --nj N --ngpu N --exp_dir DIR (default exp)"

fsdd_dir=
smoke=false
data_dir=data
config=mspm-ast-tiny
pretrain_steps=1000
downstream_steps=400
vocoder_steps=600

cd "$(dirname "$0")"
recipes=../../../recipes
. "$recipes/path.sh"
. "$recipes/lib.sh"
parse_options "$@"

if [ -z "$fsdd_dir" ]; then
    if [ -d ../../../../shared/data/fsdd/recordings ]; then
        fsdd_dir=../../../../shared/data/fsdd
    else
        fsdd_dir=downloads/fsdd
    fi
fi
per_speaker=1000000 # everything
if [ "$smoke" = true ]; then
    per_speaker=10 # spread over each speaker's utterances: one of every digit
    pretrain_steps=2
    downstream_steps=2
    vocoder_steps=2
fi
data=$data_dir
# 8 kHz audio: 64 mel bins keep every filter wider than an FFT bin; stacked frames, 4 blocks.
pretrain_opts="data.sample_rate=8000 data.frontend_config.num_mel_bins=64 encoder.overrides.input.num_bins=64
  encoder.overrides.input.kind=frame encoder.overrides.input.frame_stack=2 encoder.overrides.num_layers=4
  data.max_seconds_per_batch=16 data.max_utt_seconds=null run.max_steps=$pretrain_steps
  run.checkpoint_every=$(((pretrain_steps + 1) / 2)) run.log_every=$(((pretrain_steps + 9) / 10))
  optim.warmup_steps=$(((pretrain_steps + 9) / 10)) optim.lr=1.0e-3 run.tensorboard=false"
upstream=$exp_dir/ssl/iter1/pretrain
common=(--ngpu "$ngpu" --nj "$nj" --force "$force")
head_opts="--max-steps $downstream_steps --batch-seconds 16"

if [ ! -d "$fsdd_dir/recordings" ]; then
    run_stage 1 "download FSDD into $fsdd_dir" "$audiossl" data download fsdd "$fsdd_dir"
fi
run_stage 2 "official split of $fsdd_dir" "$audiossl" data prepare-fsdd "$fsdd_dir/recordings" "$data/full"
run_stage 3 "train set" "$audiossl" data subset "$data/full/train" "$data/train" --utts-per-speaker "$per_speaker"
run_stage 4 "test set" "$audiossl" data subset "$data/full/test" "$data/test" --utts-per-speaker "$per_speaker"
# The same seed over the same six speakers gives the same halves in both splits: the SV head trains on
# three speakers' train takes and is tested on the other three speakers' test takes.
run_stage 5 "speaker halves of the train set" "$audiossl" data split "$data/train" "$data/sv_train" \
    --parts train=0.5,heldout=0.5 --by speaker --seed 0
run_stage 6 "speaker halves of the test set" "$audiossl" data split "$data/test" "$data/sv_test" \
    --parts enrolled=0.5,test=0.5 --by speaker --seed 0
run_stage 7 "pretraining ($config)" bash "$recipes/ssl.sh" --train_data "$data/train" --exp_dir "$exp_dir/ssl" \
    --config "$config" --pretrain_opts "$pretrain_opts" "${common[@]}"
run_stage 8 "digit ASR" bash "$recipes/asr.sh" --train_data "$data/train" --test_data "$data/test" \
    --upstream "$upstream" --train_opts "$head_opts --head bilstm --hidden 64 --layers 1 --lr 2e-3" \
    --lexicon "$data/full/train/words.txt" --exp_dir "$exp_dir/asr" "${common[@]}"
run_stage 9 "speaker verification" bash "$recipes/sv.sh" --train_data "$data/sv_train/train" \
    --test_data "$data/sv_test/test" --upstream "$upstream" --train_opts "$head_opts" --exp_dir "$exp_dir/sv" \
    "${common[@]}"
run_stage 10 "voice conversion" bash "$recipes/vc.sh" --train_data "$data/train" --test_data "$data/test" \
    --model "$upstream" --vocoder_opts "--kind mel-gl --steps $vocoder_steps" --min_seconds 1 --pairs 8 \
    --sv_run "$exp_dir/sv/run" --asr_run "$exp_dir/asr/run" --exp_dir "$exp_dir/vc" "${common[@]}"
run_stage 11 "report" "$audiossl" report "$exp_dir" -o "$exp_dir/report.md" --title "audiossl on FSDD"
log "done: $exp_dir/report.md"
