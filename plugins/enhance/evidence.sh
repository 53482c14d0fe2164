#!/usr/bin/env bash
# Evidence for docs/results.md "Enhancement and separation": se and ss on the synthetic corpus and FSDD,
# for fbank, a random encoder and the shared pretrained w2v-BERT (8 kHz), a few CPU-minutes each.
# Usage: OMP_NUM_THREADS=1 nice -n 10 plugins/enhance/evidence.sh [OUT=exp/enhance]
set -euo pipefail
OUT=${1:-exp/enhance}
A=".venv/bin/audiossl"
CKPT_RUN=/work/ckpt/w2vbert-fsdd/run
CKPT=$(ls "$CKPT_RUN"/ckpt-*.pt | sort | tail -1)   # the architecture of the random baseline
UPSTREAMS=("fbank:8000" "random:$CKPT" "$CKPT_RUN")
NAMES=(fbank random w2vbert)
STFT=(--n-fft 256 --win-length 200 --hop-length 80)  # 32 ms FFT, 25 ms window, 10 ms hop at 8 kHz
TRAIN=(--max-steps 300 --budget-minutes 2.5 --lr 2e-3 --batch-seconds 30 --hidden-dim 128 --num-layers 2 --device cpu)
mkdir -p "$OUT/data"
# sources: FSDD 50 train / 8 test utterances per speaker; synthetic corpus 144 train / 32 test (H3's shared dirs)
[ -d "$OUT/data/fsdd-train" ] || $A data subset /work/ckpt/data/fsdd/train "$OUT/data/fsdd-train" --utts-per-speaker 50
[ -d "$OUT/data/fsdd-test" ] || $A data subset /work/ckpt/data/fsdd/test "$OUT/data/fsdd-test" --utts-per-speaker 8
[ -d "$OUT/data/synth-test" ] || $A data subset /work/ckpt/data/synth-split/test "$OUT/data/synth-test" --utts-per-speaker 4
declare -A SRC=([fsdd-train]="$OUT/data/fsdd-train" [fsdd-test]="$OUT/data/fsdd-test"
                [synth-train]=/work/ckpt/data/synth-split/train [synth-test]="$OUT/data/synth-test")
for part in "${!SRC[@]}"; do   # pairs (noise 0-15 dB, white/pink/babble) and mixtures, at 8 kHz (the upstreams' rate)
  $A se make-pairs "${SRC[$part]}" -o "$OUT/data/se-$part" --sample-rate 8000 --seed 0
  $A ss make-mixtures "${SRC[$part]}" -o "$OUT/data/ss-$part" --sample-rate 8000 --seed 0
done
for corpus in synth fsdd; do
  for task in se ss; do
    for i in 0 1 2; do
      run="$OUT/$corpus-$task-${NAMES[$i]}"
      [ -f "$run/eval/metrics.json" ] && continue
      [ -d "$run/run" ] && resume=--resume || resume=
      $A "$task" train "$OUT/data/$task-$corpus-train" -u "${UPSTREAMS[$i]}" -o "$run/run" "${TRAIN[@]}" "${STFT[@]}" $resume
      $A "$task" evaluate "$run/run" "$OUT/data/$task-$corpus-test" -o "$run/eval" --device cpu
    done
  done
done
.venv/bin/python plugins/enhance/summarize.py "$OUT"
