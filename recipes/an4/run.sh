#!/usr/bin/env bash
# The bundled AN4 model, from the corpus to models/an4/: manifests with a dev split by speaker, a data
# check, training on CPU in two stages (clean, then fine-tuning with speed perturbation and noise),
# a 3-gram LM of the training transcripts, LM weight tuning on dev, and greedy and beam+LM evaluation
# on dev. models/an4/MODEL.md has what it produced and what else was tried.
#
#   bash recipes/an4/run.sh                      # AN4 in ../shared/data/an4, everything under runs/an4
#   AN4=/path/to/an4 OUT=runs/x bash recipes/an4/run.sh
#
# Each step is skipped when its output exists, and training resumes from its last checkpoint, so a
# killed run is continued by running the script again. The result is OUT/export/{model.pt,lm-3gram.arpa};
# copy both into models/an4/ to ship them. MODEL.md there has the numbers this produced.
set -euo pipefail

AN4=${AN4:-../shared/data/an4}
OUT=${OUT:-runs/an4}
DATA=${DATA:-data/an4}
THREADS=${THREADS:-2}
EPOCHS=${EPOCHS:-70}          # stage 1: clean
TUNE_EPOCHS=${TUNE_EPOCHS:-40}  # stage 2: augmented fine-tuning
AVERAGE=${AVERAGE:-0}          # K > 1: ship the average of stage 2's last K epochs instead of its best.pt
export PYTHONHASHSEED=0

step() { printf '\n== %s\n' "$*"; }

step "manifests: the AN4 training half, 10 % of its speakers held out as dev"
if [[ ! -f $DATA/an4-dev.jsonl ]]; then
    asr prepare an4 --root "$AN4" --out "$DATA" --dev-fraction 0.1
fi

mkdir -p "$OUT"

step "data check"
asr doctor "$DATA/an4-train.jsonl" "$DATA/an4-dev.jsonl" --json "$OUT/doctor.json" || {
    echo "asr doctor found blocking problems in the manifests (see above)" >&2; exit 1; }

step "stage 1: training on clean audio ($EPOCHS epochs, $THREADS threads)"
resume=()
[[ -f $OUT/train/last.pt ]] && resume=(--resume)
asr train --train "$DATA/an4-train.jsonl" --dev "$DATA/an4-dev.jsonl" --out "$OUT/train" \
    --preset small --epochs "$EPOCHS" --lr 2e-3 --warmup-steps 300 --max-batch-seconds 40 \
    --threads "$THREADS" "${resume[@]}"

# Augmentation from the start kept the model on CTC's all-blank plateau for many times longer (MODEL.md);
# switched on once the model has found its alignments, it buys robustness to speed and noise.
step "noise for stage 2, built from the training audio"
if [[ ! -f $OUT/noise/babble-8.wav ]]; then
    python recipes/an4/make_noise.py --manifest "$DATA/an4-train.jsonl" --out "$OUT/noise"
fi

step "stage 2: fine-tuning with speed perturbation and noise ($TUNE_EPOCHS epochs)"
resume=()
[[ -f $OUT/tune/last.pt ]] && resume=(--resume)
asr train --train "$DATA/an4-train.jsonl" --dev "$DATA/an4-dev.jsonl" --out "$OUT/tune" \
    --init "$OUT/train/best.pt" --epochs "$TUNE_EPOCHS" --lr 5e-4 --warmup-steps 100 --max-batch-seconds 40 \
    --speed-perturb --noise-dir "$OUT/noise" --noise-snr 10,40 --shuffle-first-epoch \
    --keep-epochs "$AVERAGE" --threads "$THREADS" "${resume[@]}"

mkdir -p "$OUT/export"
if (( AVERAGE > 1 )); then
    step "average the last $AVERAGE epochs"
    asr average --last "$AVERAGE" --run "$OUT/tune" --out "$OUT/export/model.pt"
else
    cp "$OUT/tune/best.pt" "$OUT/export/model.pt"
fi

step "3-gram LM of the training transcripts"
asr lm build --manifest "$DATA/an4-train.jsonl" --order 3 --out "$OUT/export/lm-3gram.arpa"

step "tune the LM weight and word score on dev; store them in the model"
asr lm tune --model "$OUT/export/model.pt" --manifest "$DATA/an4-dev.jsonl" --lm "$OUT/export/lm-3gram.arpa" \
    --save "$OUT/export/model.pt"

step "evaluate on dev: greedy, then the stored beam + LM settings"
asr evaluate --model "$OUT/export/model.pt" --manifest "$DATA/an4-dev.jsonl" --decoder greedy \
    --output "$OUT/eval-greedy"
asr evaluate --model "$OUT/export/model.pt" --manifest "$DATA/an4-dev.jsonl" --output "$OUT/eval-lm"

step "done: $OUT/export/model.pt and $OUT/export/lm-3gram.arpa"
