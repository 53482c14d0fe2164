#!/usr/bin/env bash
# VoxCeleb: self-supervised speaker DINO of Conformer-Base (plus the cluster-aware iteration),
# then speaker verification on VoxCeleb1-O (the official cleaned trials, veri_test2.txt).
#
#   1 VoxCeleb1 data dirs + trials      audiossl data prepare-voxceleb --trials   (dev = 1211 speakers, test = 40)
#   2 VoxCeleb2 dev data dir            audiossl data prepare-voxceleb            [with --vox2_dir]
#   3 smoke: a few dev utterances       audiossl data subset                      [--smoke true]
#   4 smoke: a few test utterances      audiossl data subset                      [--smoke true]
#   5 DINO pretraining                  recipes/ssl.sh (conf/dino_base.yaml)
#   6 pseudo-speakers from iteration 1  audiossl dino cluster                     [--cluster_k > 0]
#   7 cluster-aware DINO iteration      recipes/ssl.sh --stage 6                  [--cluster_k > 0]
#   8 speaker verification              recipes/sv.sh (trained head + frozen-feature reference)
#   9 report                            audiossl report
# VoxCeleb is not freely downloadable: request it (see prepare-voxceleb's message) and pass --vox1_dir.
# --upstream SPEC skips pretraining (stages 5-7). With --smoke true the test side is a subset, so
# sv.sh draws its own trials among it instead of the official list.
help_message="usage: egs/voxceleb/sv1/run.sh --vox1_dir DIR [options]

  --vox1_dir DIR        VoxCeleb1 (dev and test unzipped together: DIR/wav/idNNNNN/...) (default downloads/voxceleb1)
  --vox2_dir DIR        VoxCeleb2 dev (DIR/dev/aac/...): pretrain on it instead of VoxCeleb1 dev (optional)
  --trials FILE         official trial list (default VOX1_DIR/veri_test2.txt,
                        from https://mm.kaist.ac.kr/datasets/voxceleb/meta/veri_test2.txt)
  --upstream SPEC       skip pretraining: verify with this checkpoint / run dir
  --config YAML         DINO config (default conf/dino_base.yaml)
  --pretrain_opts '...' extra 'key=value' overrides of the DINO config
  --cluster_k K         pseudo-speakers of the cluster-aware iteration (default 1000; 0: one iteration)
  --sv_opts '...'       options of 'audiossl sv train'
  --data_dir DIR        where the data dirs go (default data)
  --smoke true          every stage on a handful of utterances, tiny model, 2 steps (tests, quick checks)
  --stage N --stop_stage M --force true --nj N --ngpu N (default 1) --nnodes N --exp_dir DIR (default exp)"

vox1_dir=downloads/voxceleb1
vox2_dir=
trials=
upstream=
config=conf/dino_base.yaml
pretrain_opts=
cluster_k=1000
sv_opts="--max-steps 40000 --batch-seconds 384 --max-utt-seconds 3"
data_dir=data
smoke=false
ngpu=1

cd "$(dirname "$0")"
recipes=../../../recipes
. "$recipes/path.sh"
. "$recipes/lib.sh"
parse_options "$@"

data=$data_dir
[ -n "$trials" ] || trials=$vox1_dir/veri_test2.txt
[ -f "$trials" ] || [ "$stage" -gt 1 ] ||
    die "trial list $trials not found: download https://mm.kaist.ac.kr/datasets/voxceleb/meta/veri_test2.txt there or pass --trials"
sv_train=$data/vox1/dev
test_data=$data/vox1/test
sv_trials=(--trials "$data/vox1/test/trials")
if [ -n "$vox2_dir" ]; then pretrain_data=$data/vox2/dev; else pretrain_data=$sv_train; fi
if [ "$smoke" = true ]; then
    pretrain_opts="encoder.preset=tiny encoder.overrides.num_layers=2 run.max_steps=2 run.checkpoint_every=1
      run.log_every=1 optim.warmup_steps=1 run.precision=fp32 run.tensorboard=false data.max_seconds_per_batch=20
      data.min_utt_seconds=0.5 objective.config.num_prototypes=64 objective.config.head_hidden_dim=64
      objective.config.teacher_warmup_steps=1 objective.config.momentum_steps=2 objective.config.global_seconds=1.0
      objective.config.local_seconds=0.5 data.max_utt_seconds=2 $pretrain_opts"
    [ "$cluster_k" -eq 0 ] || cluster_k=2
    sv_opts="--max-steps 2 --batch-seconds 20"
    pretrain_data=$data/smoke/dev sv_train=$data/smoke/dev test_data=$data/smoke/test
    sv_trials=(--num_trials 20)
fi
common=(--ngpu "$ngpu" --nnodes "$nnodes" --nj "$nj" --force "$force")

run_stage 1 "VoxCeleb1 data dirs and trials" "$audiossl" data prepare-voxceleb "$vox1_dir" -o "$data/vox1" \
    --trials "$trials"
if [ -n "$vox2_dir" ]; then
    run_stage 2 "VoxCeleb2 data dir" "$audiossl" data prepare-voxceleb "$vox2_dir" -o "$data/vox2"
fi
if [ "$smoke" = true ]; then
    run_stage 3 "smoke dev subset" "$audiossl" data subset "$data/vox1/dev" "$data/smoke/dev" \
        --utts-per-speaker 3 --max-speakers 4
    run_stage 4 "smoke test subset" "$audiossl" data subset "$data/vox1/test" "$data/smoke/test" \
        --utts-per-speaker 2 --max-speakers 3
fi

dino=$exp_dir/dino
if [ -z "$upstream" ]; then
    run_stage 5 "DINO pretraining ($config)" bash "$recipes/ssl.sh" --train_data "$pretrain_data" \
        --exp_dir "$dino" --config "$config" --pretrain_opts "$pretrain_opts" "${common[@]}"
    upstream=$dino/iter1/pretrain
    if [ "$cluster_k" -gt 0 ]; then
        run_stage 6 "$cluster_k pseudo-speakers from DINO iteration 1" "$audiossl" dino cluster "$upstream" \
            --data "$pretrain_data" --k "$cluster_k" --out "$dino/cluster"
        # Same data and statistics as iteration 1 (ssl.sh from its pretraining stage on).
        cluster_opts="data.global_stats=$dino/global_stats.npz
          objective.config.cluster={\"labels\":\"$dino/cluster/utt2pseudo\",\"init\":\"$upstream\"}"
        run_stage 7 "cluster-aware DINO iteration" bash "$recipes/ssl.sh" --stage 6 --train_data "$pretrain_data" \
            --exp_dir "$exp_dir/dino_cluster" --config "$config" --pretrain_opts "$pretrain_opts $cluster_opts" \
            "${common[@]}"
        upstream=$exp_dir/dino_cluster/iter1/pretrain
    fi
else
    [ "$stage" -gt 7 ] || log "stages 5-7: pretraining skipped, verification on --upstream $upstream"
fi
run_stage 8 "speaker verification on $upstream" bash "$recipes/sv.sh" --train_data "$sv_train" \
    --test_data "$test_data" "${sv_trials[@]}" --upstream "$upstream" --train_opts "$sv_opts" \
    --exp_dir "$exp_dir/sv" "${common[@]}"
run_stage 9 "report" "$audiossl" report "$exp_dir" -o "$exp_dir/report.md" --title "audiossl on VoxCeleb"
log "done: $exp_dir/report.md"
