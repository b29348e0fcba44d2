#!/usr/bin/env bash
# The bundled English model, from ../shared/data to models/english/: manifests with dev splits by speaker
# (LibriSpeech train-clean-5, speechocean762's training half, AN4's training half), the audio decoded once
# to WAV, two fine-tuning runs of the AN4 character model side by side, their weights averaged, a word LM
# of the Gutenberg text with its lexicon, LM weight tuning on dev, and evaluation on every dev set.
# models/english/MODEL.md has what it produced and what else was tried.
#
#   bash recipes/english/run.sh                     # everything under data/english and runs/english
#   EPOCHS=30 OUT=runs/english-long bash recipes/english/run.sh
#
# Each step is skipped when its output exists, and training resumes from its last checkpoint, so a killed
# run is continued by running the script again. The result is OUT/export/: copy it into models/english/.
set -euo pipefail

SHARED=${SHARED:-../shared/data}
OUT=${OUT:-runs/english}
DATA=${DATA:-data/english}
INIT=${INIT:-models/an4/model.pt}  # the AN4 model: its 29 characters are English's, and it is past CTC's blank plateau
EPOCHS=${EPOCHS:-12}
STAGE2_EPOCHS=${STAGE2_EPOCHS:-12}
STAGE2_THREADS=${STAGE2_THREADS:-2}  # stage 2 is one run: both cores
THREADS=${THREADS:-1}              # threads of each of the two runs (two runs on two cores, BENCHMARKS.md)
LM_ORDER=${LM_ORDER:-3}
LM_PRUNE=${LM_PRUNE:-3}            # asr lm build --min-count: n-grams (n >= 2) seen fewer times are dropped
LM_VOCAB=${LM_VOCAB:-50000}        # the lexicon: the LM text's most frequent words (100,000 made the same dev
                                   # WER and took 1 s longer to start, MODEL.md)
export PYTHONHASHSEED=0

step() { printf '\n== %s\n' "$*"; }

step "manifests: 10 % of LibriSpeech's readers and of speechocean762's speakers held out as dev"
[[ -f $DATA/train-clean-5-dev.jsonl ]] ||
    asr prepare librispeech --root "$SHARED/librispeech-mini" --out "$DATA" --dev-fraction 0.1
[[ -f $DATA/so762-train-dev.jsonl ]] ||
    asr prepare kaldi --data-dir "$SHARED/speechocean762/train" --root "$SHARED/speechocean762" \
        --out "$DATA/so762-train.jsonl" --dev-fraction 0.1
[[ -f data/an4/an4-dev.jsonl ]] || asr prepare an4 --root "$SHARED/an4" --out data/an4 --dev-fraction 0.1

step "audio decoded once to WAV (Opus decodes at ~500x real time per core; WAV reads at memory speed)"
C=$DATA/cache
[[ -f $C/an4-dev.jsonl ]] ||
    python recipes/english/cache_audio.py "$DATA"/{train-clean-5,train-clean-5-dev,so762-train,so762-train-dev}.jsonl \
        data/an4/an4-{train,dev}.jsonl --out-dir "$C"
cat "$C/train-clean-5.jsonl" "$C/so762-train.jsonl" "$C/an4-train.jsonl" > "$C/train-all.jsonl"
cat "$C/train-clean-5-dev.jsonl" "$C/so762-train-dev.jsonl" > "$C/dev-all.jsonl"

mkdir -p "$OUT"
step "data check"
asr doctor "$C/train-all.jsonl" "$C/dev-all.jsonl" --json "$OUT/doctor.json" || {
    echo "asr doctor found blocking problems in the manifests (see above)" >&2; exit 1; }

# Two runs from the AN4 model that differ only in their seed, one thread each side by side; the shipped
# weights are the mean of the two, each first averaged over its last 5 epochs (a model soup). Peak LR 3e-3 and
# 120-s batches (270 steps an epoch): with 1.5e-3, 240-s batches and noise mixed into half the utterances
# (run a, MODEL.md) the dev CER took 30 minutes to reach what these settings reach in 9.
train() {  # train NAME SEED
    local resume=()
    [[ -f $OUT/$1/last.pt ]] && resume=(--resume)
    asr train --train "$C/train-all.jsonl" --dev "$C/dev-all.jsonl" --out "$OUT/$1" --init "$INIT" \
        --epochs "$EPOCHS" --lr 3e-3 --warmup-steps 150 --max-batch-seconds 120 --max-duration 30 \
        --speed-perturb --time-masks 2 --inter-ctc 0.3 --seed "$2" --keep-epochs 5 --threads "$THREADS" \
        --workers 1 "${resume[@]}" >> "$OUT/$1.log" 2>&1
}
step "training: two runs of $EPOCHS epochs from $INIT (logs: $OUT/run-c.log, $OUT/run-d.log)"
train run-c 1 & c=$!
train run-d 2 & d=$!
wait $c || { echo "training run run-c failed: see $OUT/run-c.log" >&2; exit 1; }
wait $d || { echo "training run run-d failed: see $OUT/run-d.log" >&2; exit 1; }

# The soup is kept only where it beats both runs alone on dev (greedy): runs trained this far from their
# common start can leave it for different basins, where the mean of their weights is worse than either.
step "average each run's last 5 epochs, then the two averages; keep the best of the three on dev"
for run in run-c run-d; do
    [[ -f $OUT/$run/avg5.pt ]] || asr average --last 5 --run "$OUT/$run" --out "$OUT/$run/avg5.pt"
done
[[ -f $OUT/soup.pt ]] || asr average "$OUT/run-c/avg5.pt" "$OUT/run-d/avg5.pt" --out "$OUT/soup.pt"
if [[ ! -f $OUT/stage1.pt ]]; then
    best="" best_wer=""
    for candidate in run-c/avg5 run-d/avg5 soup; do
        asr evaluate --model "$OUT/$candidate.pt" --manifest "$C/dev-all.jsonl" --decoder greedy \
            --output "$OUT/pick/$candidate" > /dev/null
        wer=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['wer'])" "$OUT/pick/$candidate/summary.json")
        echo "$candidate: dev WER $wer (greedy)"
        if [[ -z $best_wer ]] || python -c "import sys; sys.exit(not float(sys.argv[1]) < float(sys.argv[2]))" "$wer" "$best_wer"; then
            best=$candidate best_wer=$wer
        fi
    done
    echo "stage 1: $best"
    cp "$OUT/$best.pt" "$OUT/stage1.pt"
fi

# Stage 2: from the best of stage 1, STAGE2_EPOCHS more at a third of the peak LR. At the end of stage 1 the
# dev CER still fell by 0.3-1 point an epoch (MODEL.md, "What was tried", has what stage 2 gained).
step "stage 2: $STAGE2_EPOCHS epochs from stage 1 at peak LR 1e-3 (log: $OUT/run-e.log)"
resume=()
[[ -f $OUT/run-e/last.pt ]] && resume=(--resume)
asr train --train "$C/train-all.jsonl" --dev "$C/dev-all.jsonl" --out "$OUT/run-e" --init "$OUT/stage1.pt" \
    --epochs "$STAGE2_EPOCHS" --lr 1e-3 --warmup-steps 100 --max-batch-seconds 120 --max-duration 30 \
    --speed-perturb --time-masks 2 --inter-ctc 0.3 --seed 3 --keep-epochs 5 --threads "$STAGE2_THREADS" \
    --workers 1 "${resume[@]}" >> "$OUT/run-e.log" 2>&1 || { echo "stage 2 failed: see $OUT/run-e.log" >&2; exit 1; }
mkdir -p "$OUT/export"
[[ -f $OUT/export/model.pt ]] || asr average --last 5 --run "$OUT/run-e" --out "$OUT/export/model.pt"

# 23 M words of Gutenberg books and the training transcripts (none of which is a dev sentence: the dev
# speakers of speechocean762 read other sentences). Pruned to ship: n-grams seen fewer than LM_PRUNE times
# dropped, words past the LM_VOCAB most frequent mapped to <unk> (MODEL.md has the sizes and what they cost).
step "word LM: $LM_ORDER-gram of the Gutenberg text and the training transcripts, its $LM_VOCAB most frequent words"
[[ -f $OUT/lm.arpa.gz ]] ||
    asr lm build --text "$SHARED/lm-text/gutenberg-lm.txt.gz" --manifest "$C/train-all.jsonl" \
        --order "$LM_ORDER" --min-count "$LM_PRUNE" --vocab-size "$LM_VOCAB" --out "$OUT/lm.arpa.gz"
# KenLM's binary trie of the same LM: the same scores, mapped into memory in 10 ms instead of parsed for 1 s
[[ -f $OUT/export/lm.bin ]] || bash recipes/english/kenlm_binary.sh "$OUT/lm.arpa.gz" "$OUT/export/lm.bin"

step "the lexicon: the LM's words spelled in the model's characters, once, rather than at every start"
[[ -f $OUT/export/lexicon.txt ]] ||
    asr lm lexicon --model "$OUT/export/model.pt" --lm "$OUT/lm.arpa.gz" --out "$OUT/export/lexicon.txt"

step "tune the LM weight and word score on dev; store them in the model"
# A coarser grid than lm tune's default (28 searches, not 81): each search of the 47 dev minutes takes
# about 10 s here.
asr lm tune --model "$OUT/export/model.pt" --manifest "$C/dev-all.jsonl" --lm "$OUT/export/lm.bin" \
    --lexicon "$OUT/export/lexicon.txt" --lm-weights 0.25:1.75:0.25 --word-scores=-1:2:1 --beam-threshold 12 --save "$OUT/export/model.pt"

step "calibrate word confidences on dev; store the fit in the model"
asr calibrate --model "$OUT/export/model.pt" --manifest "$C/dev-all.jsonl" --save "$OUT/export/model.pt" \
    --json "$OUT/calibration.json"

step "evaluate on every dev set: greedy, then the stored beam + LM settings"
for dev in train-clean-5-dev so762-train-dev an4-dev; do
    asr evaluate --model "$OUT/export/model.pt" --manifest "$C/$dev.jsonl" --decoder greedy --output "$OUT/eval/$dev-greedy"
    asr evaluate --model "$OUT/export/model.pt" --manifest "$C/$dev.jsonl" --output "$OUT/eval/$dev-lm"
done
# The torch-free runtime's copy of the model, beside the checkpoint and sharing its LM and lexicon (the
# runtime's install carries these files and not model.pt: docs/runtime.md). EXPORT_FLAGS=--int8 for the
# quantised encoder (bench/bench_runtime_wer.py measures what it costs).
step "export the encoder to ONNX for the torch-free runtime"
asr export --model "$OUT/export/model.pt" --out "$OUT/onnx" --overwrite ${EXPORT_FLAGS:-}
cp "$OUT"/onnx/{model.json,encoder.onnx,mel_filters.npy} "$OUT/export/"
step "done: $OUT/export/ (model.pt, lm.bin, lexicon.txt, model.json, encoder.onnx, mel_filters.npy): copy them into models/english/"
