#!/usr/bin/env bash
# Shared helpers of the recipe stage scripts (sourced, never run).
#
# A recipe declares its options as shell variables with defaults, then sources this file and
# calls `parse_options "$@"`: `--name value` or `--name=value` sets variable `name` (dashes
# become underscores); an option with no variable is an error. Every recipe gets:
#   --stage N --stop_stage M   run stages N..M (Kaldi/ESPnet convention)
#   --force true               rerun stages even when their .done marker exists
#   --nj N                     parallel jobs for per-utterance work (data loader workers)
#   --ngpu N --nnodes N        training through torchrun when more than one process is asked for
#   --rdzv_endpoint HOST:PORT  multi-node through torchrun's elastic rendezvous (c10d): every node runs
#                              the same command with the same endpoint and --rdzv_id (no --node_rank);
#                              without it, nodes meet at --master_addr/--master_port by --node_rank
#   --launch_prefix 'CMD ...'  words put before torchrun in training stages (recipes/slurm.sh: srun, which
#                              starts one torchrun per node while the other stages run once)
#   --exp_dir DIR              where logs and .done markers go
# Each stage is one `audiossl` command run by `run_stage`: its output goes to
# EXP_DIR/logs/stageN.log, success writes EXP_DIR/.done/stageN (a rerun skips it), and a
# failure prints the log's tail and path and stops the script.

set -euo pipefail

stage=${stage:-1}
stop_stage=${stop_stage:-100}
force=${force:-false}
nj=${nj:-2}
ngpu=${ngpu:-0}
nnodes=${nnodes:-1}
node_rank=${node_rank:-0}
master_addr=${master_addr:-localhost}
master_port=${master_port:-29500}
rdzv_endpoint=${rdzv_endpoint:-}
rdzv_id=${rdzv_id:-audiossl}
rdzv_backend=${rdzv_backend:-c10d}
launch_prefix=${launch_prefix:-}
exp_dir=${exp_dir:-exp}
audiossl=${AUDIOSSL:-audiossl}

log() {
    echo "$(date '+%Y-%m-%d %H:%M:%S') ($(basename "${BASH_SOURCE[1]:-$0}"):${BASH_LINENO[0]}) $*" >&2
}

die() {
    log "error: $*"
    exit 1
}

# parse_options "$@": set recipe variables from --name value / --name=value.
parse_options() {
    local name value var
    while [ $# -gt 0 ]; do
        case "$1" in
            --help | -h)
                echo "${help_message:-usage: $0 [--option value ...]}"
                exit 0
                ;;
            --*=*)
                name=${1%%=*}
                value=${1#*=}
                shift
                ;;
            --*)
                [ $# -ge 2 ] || die "option $1 needs a value"
                name=$1
                value=$2
                shift 2
                ;;
            *) die "unexpected argument '$1' (options are --name value; see --help)" ;;
        esac
        var=${name#--}
        var=${var//-/_}
        [[ $var =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "bad option name $name"
        declare -p "$var" >/dev/null 2>&1 || die "unknown option $name (see --help)"
        printf -v "$var" '%s' "$value"
    done
    [[ $stage =~ ^[0-9]+$ && $stop_stage =~ ^[0-9]+$ ]] || die "--stage and --stop_stage take stage numbers"
    [[ $nj =~ ^[1-9][0-9]*$ ]] || die "--nj takes a positive number, got '$nj'"
    [[ $ngpu =~ ^[0-9]+$ && $nnodes =~ ^[1-9][0-9]*$ ]] || die "--ngpu/--nnodes take numbers"
}

# run_stage N TITLE CMD ARGS...: run CMD as stage N when stage <= N <= stop_stage.
run_stage() {
    local n=$1 title=$2
    shift 2
    if [ "$n" -lt "$stage" ] || [ "$n" -gt "$stop_stage" ]; then
        return 0
    fi
    local done_dir="$exp_dir/.done" log_dir="$exp_dir/logs"
    local marker="$done_dir/stage$n" logf="$log_dir/stage$n.log"
    if [ -f "$marker" ] && [ "$force" != true ]; then
        log "stage $n: $title - already done (remove $marker or pass --force true to redo)"
        return 0
    fi
    mkdir -p "$done_dir" "$log_dir"
    # A stage that runs again invalidates what later stages made from its old outputs.
    local later
    for later in "$done_dir"/stage*; do
        [ -e "$later" ] || continue
        if [ "${later##*/stage}" -gt "$n" ]; then
            rm -f "$later"
        fi
    done
    log "stage $n: $title"
    log "  $*"
    printf '# %s\n# %s\n' "$(date '+%Y-%m-%d %H:%M:%S')" "$*" >"$logf"
    local rc=0
    "$@" >>"$logf" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then
        tail -n 15 "$logf" >&2 || true
        die "stage $n ($title) failed with exit status $rc; full log: $logf"
    fi
    touch "$marker"
    log "stage $n done (log: $logf)"
}

# train_launcher: the command that starts training, one process or torchrun over ngpu x nnodes.
# With --rdzv_endpoint the nodes meet through torchrun's elastic rendezvous (any node may start
# first, ranks are assigned at the meeting); otherwise by --node_rank at --master_addr.
# Prints one word per line, for `mapfile -t launcher < <(train_launcher)`.
train_launcher() {
    local procs=$((ngpu > 1 ? ngpu : 1)) prefix
    read -r -a prefix <<<"$launch_prefix"
    [ "${#prefix[@]}" -eq 0 ] || printf '%s\n' "${prefix[@]}"
    if [ -n "$rdzv_endpoint" ]; then
        printf '%s\n' torchrun --nnodes "$nnodes" --nproc_per_node "$procs" --rdzv_backend "$rdzv_backend" \
            --rdzv_endpoint "$rdzv_endpoint" --rdzv_id "$rdzv_id" --max_restarts 0 -m audiossl.cli
    elif [ "$procs" -gt 1 ] || [ "$nnodes" -gt 1 ]; then
        printf '%s\n' torchrun --nnodes "$nnodes" --node_rank "$node_rank" --nproc_per_node "$procs" \
            --master_addr "$master_addr" --master_port "$master_port" -m audiossl.cli
    else
        printf '%s\n' "$audiossl"
    fi
}

# train_device: the run.device setting for --ngpu.
train_device() {
    if [ "$ngpu" -gt 0 ]; then echo cuda; else echo cpu; fi
}

# resume_flag RUN_DIR: "--resume" when RUN_DIR already holds a checkpoint (an interrupted training stage
# continues instead of starting over), else nothing.
resume_flag() {
    if ls "$1"/ckpt-*.pt >/dev/null 2>&1; then echo --resume; fi
}

# words VAR STRING: split a space-separated option string (e.g. --train_opts) into the array VAR.
words() {
    local -n _out=$1
    read -r -a _out <<<"${2:-}"
}
