#!/usr/bin/env bash
# IEMOCAP: emotion recognition, 4 classes (neutral, happy + excited, angry, sad), leave-one-session-out
# cross-validation (5 folds: train on four sessions, test on the fifth, whose two speakers are unseen).
#
#   1 data dir (utt2emo, utt2session)    audiossl data prepare-iemocap
#   2 smoke: a few utterances            audiossl data subset            [--smoke true]
#   3 session folds                      audiossl data folds --by session
#   4 pretraining on IEMOCAP's audio     recipes/ssl.sh (conf/mspm_ast_base.yaml)   [unless --upstream]
#   5-9 one fold per session             recipes/er.sh (WA, UA, confusion matrix)
#  10 report                             audiossl report (the per-fold tables)
# IEMOCAP is licensed, not downloadable: request it (see prepare-iemocap's message) and pass --corpus_dir.
# Stage 4 pretrains without labels on every session (the test sessions' audio included, as in-domain
# SSL usually does); --upstream takes a model pretrained elsewhere (egs/librispeech/ssl1) instead.
help_message="usage: egs/iemocap/er1/run.sh --corpus_dir DIR [options]

  --corpus_dir DIR      IEMOCAP_full_release (with Session1 ... Session5) (default downloads/IEMOCAP_full_release)
  --sessions '...'      held-out sessions, one fold each (default 'Ses01 Ses02 Ses03 Ses04 Ses05')
  --upstream SPEC       skip pretraining: classify on this checkpoint / run dir
  --config YAML         pretraining config (default conf/mspm_ast_base.yaml)
  --pretrain_opts '...' extra 'key=value' overrides of the pretraining config
  --er_opts '...'       options of 'audiossl er train'
  --data_dir DIR        where the data dirs go (default data)
  --smoke true          every stage on a handful of utterances, tiny model, 2 steps (tests, quick checks)
  --stage N --stop_stage M --force true --nj N --ngpu N (default 1) --nnodes N --exp_dir DIR (default exp)"

corpus_dir=downloads/IEMOCAP_full_release
sessions="Ses01 Ses02 Ses03 Ses04 Ses05"
upstream=
config=conf/mspm_ast_base.yaml
pretrain_opts=
er_opts="--max-steps 20000 --batch-seconds 160 --class-weights"
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
if [ "$smoke" = true ]; then
    pretrain_opts="encoder.preset=tiny encoder.overrides.num_layers=2 run.max_steps=2 run.checkpoint_every=1
      run.log_every=1 optim.warmup_steps=1 run.precision=fp32 run.tensorboard=false data.max_seconds_per_batch=20
      $pretrain_opts"
    er_opts="--max-steps 2 --batch-seconds 20"
    all=$data/smoke
fi
set -- $sessions
[ $# -le 5 ] || die "--sessions takes at most 5 sessions, got '$sessions'"
common=(--ngpu "$ngpu" --nnodes "$nnodes" --nj "$nj" --force "$force")

run_stage 1 "IEMOCAP data dir" "$audiossl" data prepare-iemocap "$corpus_dir" "$data/all"
if [ "$smoke" = true ]; then
    run_stage 2 "smoke subset" "$audiossl" data subset "$data/all" "$all" --utts-per-speaker 3
fi
run_stage 3 "leave-one-session-out folds" "$audiossl" data folds "$all" "$data/folds" --by session
if [ -z "$upstream" ]; then
    run_stage 4 "pretraining on IEMOCAP ($config)" bash "$recipes/ssl.sh" --train_data "$all" \
        --exp_dir "$exp_dir/ssl" --config "$config" --pretrain_opts "$pretrain_opts" "${common[@]}"
    upstream=$exp_dir/ssl/iter1/pretrain
else
    [ "$stage" -gt 4 ] || log "stage 4: pretraining skipped, folds run on --upstream $upstream"
fi
n=5
for session in $sessions; do
    run_stage "$n" "fold $session held out" bash "$recipes/er.sh" --train_data "$data/folds/$session/train" \
        --test_data "$data/folds/$session/test" --upstream "$upstream" --train_opts "$er_opts" \
        --exp_dir "$exp_dir/er/$session" "${common[@]}"
    n=$((n + 1))
done
run_stage 10 "report" "$audiossl" report "$exp_dir" -o "$exp_dir/report.md" --title "audiossl on IEMOCAP (4 classes)"
log "done: $exp_dir/report.md"
