#!/usr/bin/env bash
# LibriSpeech: HuBERT (two iterations) and wav2vec 2.0 pretraining of Conformer-Base, then CTC ASR on each.
#
#   1 download the parts (OpenSLR SLR12)       audiossl data download librispeech  [skipped when present]
#   2 Kaldi data dirs, one per part            audiossl data prepare-librispeech
#   3 pretraining set (960 h by default)       audiossl data combine
#   4 smoke: a few utterances to train on      audiossl data subset                [--smoke true]
#   5 smoke: a few utterances to test on       audiossl data subset                [--smoke true]
#   6 HuBERT, iterations 1 (MFCC k-means) + 2  recipes/ssl.sh --labels true
#   7 wav2vec 2.0                              recipes/ssl.sh
#   8 ASR on the HuBERT encoder                recipes/asr.sh
#   9 ASR on the wav2vec 2.0 encoder           recipes/asr.sh
#  10 report                                   audiossl report
# --upstream SPEC skips the pretraining stages and runs ASR on that encoder (stage 8 only).
help_message="usage: egs/librispeech/ssl1/run.sh [options]

  --corpus_dir DIR       where LibriSpeech is (or is downloaded to): DIR/LibriSpeech/<part> (default downloads)
  --pretrain_parts '...' parts pretrained on (default: the 960 h, train-clean-100 train-clean-360 train-other-500)
  --asr_train_part P     part the CTC head is trained on (default train-clean-100)
  --asr_valid_part P     part for validation losses (default dev-clean)
  --test_part P          part decoded and scored (default test-clean)
  --upstream SPEC        skip pretraining: run ASR on this checkpoint / run dir
  --hubert_config YAML   (default conf/hubert_base.yaml)     --wav2vec2_config YAML (default conf/wav2vec2_base.yaml)
  --pretrain_opts '...'  extra 'key=value' overrides of both pretraining configs
  --asr_opts '...'       options of 'audiossl asr train'
  --kmeans_clusters K    MFCC clusters of iteration 1 (default 100)   --relabel_clusters K (iteration 2, default 500)
  --kmeans_opts '...'    'key=value' overrides of both k-means fits (default sample_fraction=0.1)
  --relabel_layer N      block of HuBERT iteration 1 clustered for iteration 2 (default 7 of 14)
  --data_dir DIR         where the data dirs go (default data)
  --smoke true           every stage on a handful of utterances, tiny models, 2 steps (tests, quick checks)
  --stage N --stop_stage M --force true --nj N --ngpu N (default 1) --nnodes N --exp_dir DIR (default exp)"

corpus_dir=downloads
pretrain_parts="train-clean-100 train-clean-360 train-other-500"
asr_train_part=train-clean-100
asr_valid_part=dev-clean
test_part=test-clean
upstream=
hubert_config=conf/hubert_base.yaml
wav2vec2_config=conf/wav2vec2_base.yaml
pretrain_opts=
asr_opts="--tokenizer char --head bilstm --hidden 1024 --layers 2 --max-steps 100000 --lr 1e-4 --batch-seconds 400"
kmeans_clusters=100
relabel_layer=7
relabel_clusters=500
kmeans_opts="sample_fraction=0.1"
data_dir=data
smoke=false
ngpu=1

cd "$(dirname "$0")"
recipes=../../../recipes
. "$recipes/path.sh"
. "$recipes/lib.sh"
parse_options "$@"

if [ "$smoke" = true ]; then
    pretrain_opts="encoder.preset=tiny encoder.overrides.num_layers=2 run.max_steps=2 run.checkpoint_every=1
      run.log_every=1 optim.warmup_steps=1 optim.accumulation_steps=1 run.precision=fp32 run.tensorboard=false
      data.max_seconds_per_batch=20 data.min_utt_seconds=0.2 data.max_utt_seconds=4 $pretrain_opts"
    asr_opts="--head linear --max-steps 2 --batch-seconds 20"
    kmeans_clusters=4
    relabel_layer=1
    relabel_clusters=4
    kmeans_opts="kmeans.n_init=1 kmeans.max_iter=10"
fi
data=$data_dir
parts_needed=$(printf '%s\n' $pretrain_parts $asr_train_part $asr_valid_part $test_part | sort -u | tr '\n' ' ')
underscore() { echo "${1//-/_}"; }
pretrain_dirs=()
for part in $pretrain_parts; do pretrain_dirs+=("$data/$(underscore "$part")"); done
train_data=$data/pretrain
asr_train=$data/$(underscore "$asr_train_part")
asr_valid=$data/$(underscore "$asr_valid_part")
test_data=$data/$(underscore "$test_part")
valid_opt=(--valid_data "$asr_valid")
if [ "$smoke" = true ]; then
    train_data=$data/smoke/train asr_train=$data/smoke/train test_data=$data/smoke/test valid_opt=()
else
    asr_opts="--valid $asr_valid $asr_opts"
fi
common=(--ngpu "$ngpu" --nnodes "$nnodes" --nj "$nj" --force "$force")

missing=
for part in $parts_needed; do
    [ -d "$corpus_dir/LibriSpeech/$part" ] || [ -d "$corpus_dir/$part" ] || missing="$missing $part"
done
if [ -n "$missing" ]; then
    run_stage 1 "download LibriSpeech:$missing" "$audiossl" data download librispeech "$corpus_dir" \
        --parts "$(echo $missing | tr ' ' ',')"
elif [ "$stage" -le 1 ]; then
    log "stage 1: LibriSpeech parts already in $corpus_dir, no download"
fi
run_stage 2 "data dirs of $parts_needed" "$audiossl" data prepare-librispeech "$corpus_dir" "$data" \
    --parts "$(echo $parts_needed | tr ' ' ',')"
run_stage 3 "pretraining set ($pretrain_parts)" "$audiossl" data combine "$data/pretrain" "${pretrain_dirs[@]}"
if [ "$smoke" = true ]; then
    run_stage 4 "smoke training subset" "$audiossl" data subset "$data/$(underscore "$asr_train_part")" "$asr_train" \
        --utts-per-speaker 3 --max-speakers 4
    run_stage 5 "smoke test subset" "$audiossl" data subset "$data/$(underscore "$test_part")" "$test_data" \
        --utts-per-speaker 2 --max-speakers 2
fi

if [ -z "$upstream" ]; then
    run_stage 6 "HuBERT pretraining, 2 iterations ($hubert_config)" bash "$recipes/ssl.sh" --train_data "$train_data" \
        "${valid_opt[@]}" --exp_dir "$exp_dir/hubert" --config "$hubert_config" --pretrain_opts "$pretrain_opts" \
        --labels true --kmeans_clusters "$kmeans_clusters" --kmeans_opts "$kmeans_opts" \
        --relabel_layer "$relabel_layer" --relabel_clusters "$relabel_clusters" "${common[@]}"
    run_stage 7 "wav2vec 2.0 pretraining ($wav2vec2_config)" bash "$recipes/ssl.sh" --train_data "$train_data" \
        "${valid_opt[@]}" --exp_dir "$exp_dir/wav2vec2" --config "$wav2vec2_config" --pretrain_opts "$pretrain_opts" \
        "${common[@]}"
    asr_upstream=$exp_dir/hubert/iter2/pretrain
else
    [ "$stage" -gt 7 ] || log "stages 6-7: pretraining skipped, ASR runs on --upstream $upstream"
    asr_upstream=$upstream
fi
asr_common=(--train_data "$asr_train" --test_data "$test_data" --train_opts "$asr_opts" "${common[@]}")
run_stage 8 "ASR on $asr_upstream" bash "$recipes/asr.sh" --upstream "$asr_upstream" --exp_dir "$exp_dir/asr_hubert" \
    "${asr_common[@]}"
if [ -z "$upstream" ]; then
    run_stage 9 "ASR on the wav2vec 2.0 encoder" bash "$recipes/asr.sh" --upstream "$exp_dir/wav2vec2/iter1/pretrain" \
        --exp_dir "$exp_dir/asr_wav2vec2" "${asr_common[@]}"
fi
run_stage 10 "report" "$audiossl" report "$exp_dir" -o "$exp_dir/report.md" --title "audiossl on LibriSpeech"
log "done: $exp_dir/report.md"
