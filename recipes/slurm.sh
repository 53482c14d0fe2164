#!/usr/bin/env bash
# Multi-node training under Slurm: one batch job, the recipe's offline stages once on the first node,
# its training stages on every node through srun + torchrun's elastic rendezvous (c10d).
#
# Submit from the repository root (sbatch runs a spooled copy of this file, so paths are taken from
# the submit dir), with the recipe's own options after the recipe name:
#
#   sbatch --nodes 8 --gpus-per-node 8 recipes/slurm.sh ssl \
#       --train_data data/librispeech_960 --exp_dir exp/hubert_base --config hubert-base.yaml \
#       --labels true --relabel_layer 6
#
# What happens: every stage runs on the batch host (the allocation's first node) as on one machine,
# except training, which the recipe starts as
#
#   srun --ntasks-per-node 1 --kill-on-bad-exit 1 --label \
#       torchrun --nnodes $SLURM_NNODES --nproc_per_node $GPUS --rdzv_backend c10d \
#           --rdzv_endpoint $FIRST_NODE:$RDZV_PORT --rdzv_id $SLURM_JOB_ID --max_restarts 0 \
#           -m audiossl.cli pretrain ...
#
# one torchrun agent per node; the agents meet at the first node's port, number the processes
# (RANK 0 .. nodes x GPUs - 1) and start them; every process runs the same `audiossl pretrain`
# on the same run dir (a shared filesystem), rank 0 writes checkpoints and logs.
# Failures: a process that dies is named in the others' error (audiossl.engine.peers) and
# --kill-on-bad-exit stops the remaining nodes; set run.dist_timeout_s to bound a hang.
# Time limits: Slurm sends SIGTERM 5 minutes before the end (--signal below); every process then
# stops after its current step with a checkpoint, and a resubmission (or --requeue) continues the
# run, since the recipe passes --resume when the run dir has a checkpoint.
#
# Environment: RDZV_PORT (default 29400) a free TCP port on the first node; GPUS (default: the
# allocation's GPUs per node, else 8). Everything else is the recipe's options (see its --help).
#
#SBATCH --job-name=audiossl
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=64
#SBATCH --time=48:00:00
#SBATCH --signal=TERM@300
#SBATCH --output=slurm-%x-%j.out

set -euo pipefail

if [ $# -lt 1 ] || [ "$1" = --help ] || [ "$1" = -h ]; then
    sed -n '2,/^#SBATCH/p' "$0" | sed -e '/^#SBATCH/d' -e 's/^# \{0,1\}//'
    exit 0
fi
recipe=$1
shift
recipes_dir=${SLURM_SUBMIT_DIR:-$(pwd)}/recipes
[ -f "$recipes_dir/$recipe.sh" ] || {
    echo "slurm.sh: no recipe $recipes_dir/$recipe.sh (submit from the repository root)" >&2
    exit 1
}
[ -n "${SLURM_JOB_ID:-}" ] || {
    echo "slurm.sh: not inside a Slurm job; submit it with sbatch (see --help)" >&2
    exit 1
}

nodes=${SLURM_NNODES:-1}
gpus=${GPUS:-${SLURM_GPUS_ON_NODE:-8}}
first_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
port=${RDZV_PORT:-29400}

exec "$recipes_dir/$recipe.sh" "$@" \
    --nnodes "$nodes" --ngpu "$gpus" \
    --rdzv_endpoint "$first_node:$port" --rdzv_id "$SLURM_JOB_ID" \
    --launch_prefix "srun --nodes $nodes --ntasks-per-node 1 --kill-on-bad-exit 1 --label"
