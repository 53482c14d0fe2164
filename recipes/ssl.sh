#!/usr/bin/env bash
# Self-supervised pretraining stages shared by every corpus (egs/*/ssl1/run.sh call this).
#
#   1 validate the training data dir          audiossl data validate
#   2 global feature statistics                audiossl features stats
#   3 spectrogram + objective mask (report)    audiossl features plot --config
#   4 k-means on front-end features  [hubert]  audiossl kmeans fit
#   5 frame labels                   [hubert]  audiossl kmeans label
#   6 pretrain (iteration 1)                   audiossl pretrain
#   7 k-means on a layer of iteration 1 [iter] audiossl kmeans fit --features checkpoint
#   8 frame labels from it              [iter] audiossl kmeans label
#   9 pretrain (iteration 2)            [iter] audiossl pretrain
# [hubert]: only when --labels true (objectives that predict cluster labels);
# [iter]: only when --relabel_layer is set as well.
help_message="usage: recipes/ssl.sh --train_data DIR --exp_dir DIR [options]

  --train_data DIR        Kaldi data dir to pretrain on (required)
  --valid_data DIR        data dir for validation loss (optional)
  --config NAME|YAML      pretraining preset or config file (default: mspm-ast-tiny)
  --pretrain_opts 'k=v ...' extra --set overrides for pretraining (space separated)
  --labels true|false     cluster-label objective (hubert): run the k-means stages (default false)
  --kmeans_features NAME  front-end clustered in iteration 1 (default mfcc)
  --kmeans_clusters K     clusters of iteration 1 (default 100)
  --kmeans_opts 'k=v ...' extra --set overrides for k-means fitting
  --relabel_layer N       layer of iteration 1 clustered for iteration 2 (empty: one iteration)
  --relabel_clusters K    clusters of iteration 2 (default 500)
  --label_option KEY      config key that takes the label dir (default objective.config.labels)
  --stage N --stop_stage M --force true --nj N --ngpu N --nnodes N --exp_dir DIR
  --rdzv_endpoint HOST:PORT --rdzv_id ID   multi-node training through torchrun's c10d rendezvous
                          (run the same command on every node; recipes/slurm.sh does it under Slurm)"

train_data=
valid_data=
config=mspm-ast-tiny
pretrain_opts=
labels=false
kmeans_features=mfcc
kmeans_clusters=100
kmeans_opts=
relabel_layer=
relabel_clusters=500
label_option=objective.config.labels

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
parse_options "$@"
[ -n "$train_data" ] || die "--train_data is required (see --help)"

device=$(train_device)
mapfile -t launcher < <(train_launcher)
config_sets=()
for opt in $pretrain_opts; do config_sets+=(--set "$opt"); done
sets=(--set "run.device=$device" --set "data.num_workers=$nj" --set "data.global_stats=$exp_dir/global_stats.npz"
    "${config_sets[@]}")
[ -z "$valid_data" ] || sets+=(--set "run.valid_data=[$valid_data]")
kmeans_sets=()
for opt in $kmeans_opts; do kmeans_sets+=(--set "$opt"); done

run_stage 1 "validate $train_data" "$audiossl" data validate "$train_data"
run_stage 2 "global statistics" "$audiossl" features stats "$train_data" --config "$config" "${config_sets[@]}" \
    --out "$exp_dir/global_stats.npz"
# A label objective cannot be built before its labels exist; the mask does not depend on them, so the
# plot gets the cluster count instead of a label dir.
plot_sets=("${config_sets[@]}")
[ "$labels" != true ] || plot_sets+=(--set "objective.config.num_clusters=$kmeans_clusters")
run_stage 3 "spectrogram with the objective's mask" "$audiossl" features plot "$train_data" --config "$config" \
    "${plot_sets[@]}" --out "$exp_dir/features.png"

iter1=$exp_dir/iter1
if [ "$labels" = true ]; then
    run_stage 4 "k-means ($kmeans_features, k=$kmeans_clusters)" "$audiossl" kmeans fit --data "$train_data" \
        --features "$kmeans_features" --n-clusters "$kmeans_clusters" --out "$iter1/kmeans" "${kmeans_sets[@]}"
    run_stage 5 "frame labels (iteration 1)" "$audiossl" kmeans label --model "$iter1/kmeans" --data "$train_data" \
        --out "$iter1/labels"
    sets1=("${sets[@]}" --set "$label_option=$iter1/labels")
else
    sets1=("${sets[@]}")
fi
run_stage 6 "pretrain ($config)" "${launcher[@]}" pretrain --config "$config" --data "$train_data" \
    --out "$iter1/pretrain" "${sets1[@]}" $(resume_flag "$iter1/pretrain")

if [ "$labels" = true ] && [ -n "$relabel_layer" ]; then
    iter2=$exp_dir/iter2
    run_stage 7 "k-means (layer $relabel_layer of iteration 1, k=$relabel_clusters)" "$audiossl" kmeans fit \
        --data "$train_data" --features "$iter1/pretrain" --set "layer=$relabel_layer" \
        --n-clusters "$relabel_clusters" --out "$iter2/kmeans" "${kmeans_sets[@]}"
    run_stage 8 "frame labels (iteration 2)" "$audiossl" kmeans label --model "$iter2/kmeans" --data "$train_data" \
        --out "$iter2/labels"
    run_stage 9 "pretrain (iteration 2)" "${launcher[@]}" pretrain --config "$config" --data "$train_data" \
        --out "$iter2/pretrain" "${sets[@]}" --set "$label_option=$iter2/labels" $(resume_flag "$iter2/pretrain")
fi
log "ssl.sh finished: $exp_dir"
