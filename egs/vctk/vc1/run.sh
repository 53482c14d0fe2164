#!/usr/bin/env bash
# VCTK 0.92: kNN voice conversion on self-supervised features (one microphone, 110 speakers):
# pretrain (or take --upstream), train a vocoder from the features to audio, convert held-out
# utterances of every speaker to other speakers and score them.
#
#   1 download VCTK 0.92 (Edinburgh DataShare)   audiossl data download vctk      [skipped when present]
#   2 data dir (mic1, transcribed recordings)     audiossl data prepare-vctk
#   3 smoke: a few utterances                     audiossl data subset             [--smoke true]
#   4 held-out utterances of every speaker        audiossl data split --by utterance
#   5 pretraining (wav2vec 2.0 Conformer-Base)    recipes/ssl.sh                   [unless --upstream]
#   6 vocoder, one converted example, evaluation  recipes/vc.sh
#   7 report                                      audiossl report
help_message="usage: egs/vctk/vc1/run.sh [options]

  --corpus_dir DIR      VCTK 0.92 (DIR/wav48_silence_trimmed, DIR/txt), downloaded there if absent (default downloads)
  --mic mic1|mic2       microphone (default mic1)
  --upstream SPEC       skip pretraining: convert with this checkpoint / run dir (e.g. a LibriSpeech HuBERT)
  --config YAML         pretraining config (default ../../librispeech/ssl1/conf/wav2vec2_base.yaml)
  --pretrain_steps N    pretraining steps on VCTK's 44 h (default 60000)
  --pretrain_opts '...' extra 'key=value' overrides of the pretraining config
  --vocoder_opts '...'  options of 'audiossl vc train-vocoder'
  --pairs N             cross-speaker pairs evaluated (default 200)
  --min_seconds S       smallest target-speaker pool accepted (default 5)
  --split SPEC          train/test shares of every speaker's utterances (default train=0.9,test=0.1)
  --data_dir DIR        where the data dirs go (default data)
  --smoke true          every stage on a handful of utterances, tiny model, 2 steps (tests, quick checks)
  --stage N --stop_stage M --force true --nj N --ngpu N (default 1) --nnodes N --exp_dir DIR (default exp)"

corpus_dir=downloads
mic=mic1
upstream=
config=../../librispeech/ssl1/conf/wav2vec2_base.yaml
pretrain_steps=60000
pretrain_opts=
vocoder_opts="--kind hifigan --preset v1 --steps 200000 --batch-size 16 --prematch-k 4 --checkpoint-every 5000"
pairs=200
min_seconds=5
split=train=0.9,test=0.1
data_dir=data
smoke=false
ngpu=1

cd "$(dirname "$0")"
recipes=../../../recipes
. "$recipes/path.sh"
. "$recipes/lib.sh"
parse_options "$@"

data=$data_dir
all=$data/all
pretrain_opts="run.max_steps=$pretrain_steps optim.warmup_steps=$((pretrain_steps / 12)) $pretrain_opts"
if [ "$smoke" = true ]; then
    pretrain_opts="encoder.preset=tiny encoder.overrides.num_layers=2 run.max_steps=2 run.checkpoint_every=1
      run.log_every=1 optim.warmup_steps=1 optim.accumulation_steps=1 run.precision=fp32 run.tensorboard=false
      data.max_seconds_per_batch=20 data.min_utt_seconds=0.2 data.max_utt_seconds=4"
    vocoder_opts="--kind mel-gl --steps 2"
    pairs=2
    min_seconds=1
    split=train=0.5,test=0.5  # vc evaluate needs two test utterances of a speaker
    all=$data/smoke
fi
common=(--ngpu "$ngpu" --nnodes "$nnodes" --nj "$nj" --force "$force")

if [ -d "$corpus_dir/wav48_silence_trimmed" ] || [ -d "$corpus_dir/VCTK-Corpus-0.92/wav48_silence_trimmed" ]; then
    [ "$stage" -gt 1 ] || log "stage 1: VCTK already in $corpus_dir, no download"
else
    run_stage 1 "download VCTK 0.92 (11 GB)" "$audiossl" data download vctk "$corpus_dir"
fi
run_stage 2 "VCTK data dir ($mic)" "$audiossl" data prepare-vctk "$corpus_dir" "$data/all" --mic "$mic"
if [ "$smoke" = true ]; then
    run_stage 3 "smoke subset" "$audiossl" data subset "$data/all" "$all" --utts-per-speaker 4 --max-speakers 3
fi
run_stage 4 "held-out utterances per speaker" "$audiossl" data split "$all" "$data" --parts "$split" --by utterance
if [ -z "$upstream" ]; then
    run_stage 5 "pretraining on VCTK ($config)" bash "$recipes/ssl.sh" --train_data "$data/train" \
        --exp_dir "$exp_dir/ssl" --config "$config" --pretrain_opts "$pretrain_opts" "${common[@]}"
    upstream=$exp_dir/ssl/iter1/pretrain
else
    [ "$stage" -gt 5 ] || log "stage 5: pretraining skipped, conversion with --upstream $upstream"
fi
run_stage 6 "voice conversion with $upstream" bash "$recipes/vc.sh" --train_data "$data/train" \
    --test_data "$data/test" --model "$upstream" --vocoder_opts "$vocoder_opts" --pairs "$pairs" \
    --min_seconds "$min_seconds" --exp_dir "$exp_dir/vc" "${common[@]}"
run_stage 7 "report" "$audiossl" report "$exp_dir" -o "$exp_dir/report.md" --title "audiossl on VCTK"
log "done: $exp_dir/report.md"
