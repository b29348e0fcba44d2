#!/usr/bin/env bash
# The bundled English model, from ../shared/data to models/english/: manifests with dev splits by speaker
# (LibriSpeech train-clean-5, speechocean762's training half, AN4's training half), the audio decoded once
# to WAV, the AN4 character model fine-tuned in three stages (the last with noise), a word LM of the Gutenberg text with its
# lexicon, LM weight tuning on dev, calibration, evaluation on every dev set and the ONNX export.
# models/english/MODEL.md has what it produced and what else was tried.
#
#   bash recipes/english/run.sh                     # everything under data/english and runs/english
#   EPOCHS=30 OUT=runs/english-long bash recipes/english/run.sh
#   TOKENIZER=bpe:256 OUT=runs/english-bpe bash recipes/english/run.sh   # 256 BPE units instead of characters
#
# Each step is skipped when its output exists, and training resumes from its last checkpoint, so a killed
# run is continued by running the script again. The result is OUT/export/: copy it into models/english/.
set -euo pipefail

SHARED=${SHARED:-../shared/data}
OUT=${OUT:-runs/english}
DATA=${DATA:-data/english}
INIT=${INIT:-models/an4/model.pt}  # the AN4 model: its 29 characters are English's, and it is past CTC's blank plateau
TOKENIZER=${TOKENIZER:-char}       # the output units; bpe:256 was better greedy and worse with the LM (MODEL.md)
EPOCHS=${EPOCHS:-12}
STAGE2_EPOCHS=${STAGE2_EPOCHS:-12}
STAGE3_EPOCHS=${STAGE3_EPOCHS:-12}
THREADS=${THREADS:-2}              # one run at a time, on both cores
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

# Stage 1: from the AN4 model (for other units than its 29 characters, its network with a new output layer),
# peak LR 3e-3 and 120-s batches (273 steps an epoch). A second seed of it only measured the seed spread
# (0.16 points), and the two runs' weight average was worse than either, so it is no longer run (MODEL.md).
train() {  # train NAME SEED EPOCHS LR WARMUP INIT [more asr train options]
    local name=$1 seed=$2 epochs=$3 lr=$4 warmup=$5 init=$6 resume=()
    shift 6
    [[ -f $OUT/$name/last.pt ]] && resume=(--resume)
    asr train --train "$C/train-all.jsonl" --dev "$C/dev-all.jsonl" --out "$OUT/$name" --init "$init" \
        --epochs "$epochs" --lr "$lr" --warmup-steps "$warmup" --max-batch-seconds 120 --max-duration 30 \
        --speed-perturb --time-masks 2 --inter-ctc 0.3 --seed "$seed" --keep-epochs 5 --threads "$THREADS" \
        --workers 1 "$@" "${resume[@]}" >> "$OUT/$name.log" 2>&1 ||
        { echo "training run $name failed: see $OUT/$name.log" >&2; exit 1; }
}
step "stage 1: $EPOCHS epochs from $INIT with $TOKENIZER units (log: $OUT/stage1.log)"
train stage1 1 "$EPOCHS" 3e-3 150 "$INIT" --tokenizer "$TOKENIZER"
[[ -f $OUT/stage1.pt ]] || asr average --last 5 --run "$OUT/stage1" --out "$OUT/stage1.pt"

# Stage 2: from the average of stage 1's last 5 epochs, STAGE2_EPOCHS more at a third of the peak LR. With
# characters it took the dev WER from 77.5 to 71.6 % (MODEL.md, "What was tried").
step "stage 2: $STAGE2_EPOCHS epochs from stage 1 at peak LR 1e-3 (log: $OUT/stage2.log)"
train stage2 3 "$STAGE2_EPOCHS" 1e-3 100 "$OUT/stage1.pt"
[[ -f $OUT/stage2.pt ]] || asr average --last 5 --run "$OUT/stage2" --out "$OUT/stage2.pt"

# Stage 3: noise once the model has found its alignments (noise from the start slowed stage 1 to a third,
# MODEL.md run a): white, pink and brown noise, mains hum and babble built from the training speech, in
# half the utterances at 10-40 dB, STAGE3_EPOCHS more epochs at peak LR 5e-4. On dev with noise at 10 dB
# it was 5-7 points better than the same stage without noise, and as good on clean dev (MODEL.md).
step "stage 3: $STAGE3_EPOCHS epochs from stage 2 with noise in half the utterances (log: $OUT/stage3.log)"
[[ -f $OUT/noise/babble-8.wav ]] || python recipes/an4/make_noise.py --manifest "$C/train-all.jsonl" --out "$OUT/noise"
train stage3 5 "$STAGE3_EPOCHS" 5e-4 100 "$OUT/stage2.pt" --noise-dir "$OUT/noise" --noise-snr 10,40 --noise-prob 0.5
mkdir -p "$OUT/export"
[[ -f $OUT/export/model.pt ]] || asr average --last 5 --run "$OUT/stage3" --out "$OUT/export/model.pt"

# 23 M words of Gutenberg books and the training transcripts (none of which is a dev sentence: the dev
# speakers of speechocean762 read other sentences). Pruned to ship: n-grams seen fewer than LM_PRUNE times
# dropped, words past the LM_VOCAB most frequent mapped to <unk> (MODEL.md has the sizes and what they cost).
step "word LM: $LM_ORDER-gram of the Gutenberg text and the training transcripts, its $LM_VOCAB most frequent words"
[[ -f $OUT/lm.arpa.gz ]] ||
    asr lm build --text "$SHARED/lm-text/gutenberg-lm.txt.gz" --manifest "$C/train-all.jsonl" \
        --order "$LM_ORDER" --min-count "$LM_PRUNE" --vocab-size "$LM_VOCAB" --out "$OUT/lm.arpa.gz"
# KenLM's binary trie of the same LM: the same scores, mapped into memory in 10 ms instead of parsed for 1 s
[[ -f $OUT/export/lm.bin ]] || bash recipes/english/kenlm_binary.sh "$OUT/lm.arpa.gz" "$OUT/export/lm.bin"

step "the lexicon: the LM's words spelled in the model's units, once, rather than at every start"
[[ -f $OUT/export/lexicon.txt ]] ||
    asr lm lexicon --model "$OUT/export/model.pt" --lm "$OUT/lm.arpa.gz" --out "$OUT/export/lexicon.txt"

step "tune the LM weight and word score on dev; store them in the model"
# A coarser grid than lm tune's default (28 searches, not 81): each search of the 47 dev minutes takes
# about 10 s here.
asr lm tune --model "$OUT/export/model.pt" --manifest "$C/dev-all.jsonl" --lm "$OUT/export/lm.bin" \
    --lexicon "$OUT/export/lexicon.txt" --lm-weights 0.25:1.75:0.25 --word-scores=-1:2:1 --beam-threshold 12 \
    --beam-size-token 10 --save "$OUT/export/model.pt"

step "calibrate word confidences on dev; store the fit in the model"
asr calibrate --model "$OUT/export/model.pt" --manifest "$C/dev-all.jsonl" --save "$OUT/export/model.pt" \
    --json "$OUT/calibration.json"

step "evaluate on every dev set: greedy, then the stored beam + LM settings"
for dev in train-clean-5-dev so762-train-dev an4-dev; do
    asr evaluate --model "$OUT/export/model.pt" --manifest "$C/$dev.jsonl" --decoder greedy --output "$OUT/eval/$dev-greedy"
    asr evaluate --model "$OUT/export/model.pt" --manifest "$C/$dev.jsonl" --output "$OUT/eval/$dev-lm"
done
# The torch-free runtime's copy of the model, beside the checkpoint and sharing its LM and lexicon (the
# runtime's install carries these files and not model.pt: docs/runtime.md). The encoder is quantised to int8
# as the bundled one is (bench/bench_runtime_wer.py measures what it costs); EXPORT_FLAGS= for fp32.
step "export the encoder to ONNX for the torch-free runtime"
asr export --model "$OUT/export/model.pt" --out "$OUT/onnx" --overwrite ${EXPORT_FLAGS-"--int8"}
cp "$OUT"/onnx/{model.json,encoder.onnx,mel_filters.npy} "$OUT/export/"
step "done: $OUT/export/ (model.pt, lm.bin, lexicon.txt, model.json, encoder.onnx, mel_filters.npy): copy them into models/english/"
