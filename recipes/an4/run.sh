#!/usr/bin/env bash
# The bundled AN4 model, from the corpus to models/an4/: manifests with a dev split by speaker, a data
# check, training on CPU in two stages (clean, then fine-tuning with speed perturbation and noise),
# a 6-gram LM of the training transcripts and of spelled names, LM weight tuning on dev, and greedy and
# beam+LM evaluation on dev. models/an4/MODEL.md has what it produced and what else was tried.
#
#   bash recipes/an4/run.sh                      # AN4 in ../shared/data/an4, everything under runs/an4
#   AN4=/path/to/an4 OUT=runs/x bash recipes/an4/run.sh
#   PRESET=medium OUT=runs/medium bash recipes/an4/run.sh   # 3 x BiLSTM 320: 66 min, a 27 MB model in fp32
#   SEED=1 OUT=runs/an4-s1 bash recipes/an4/run.sh          # another start: stage 1 seed 1, stage 2 seeds 2 and 3
#   RIR_PROB=0.5 OUT=runs/an4-XR bash recipes/an4/run.sh    # half of stage 2 in simulated rooms (pip install -e ".[recipes]")
#
# Each step is skipped when its output exists, and training resumes from its last checkpoint, so a
# killed run is continued by running the script again. The result is OUT/export/{model.pt,lm-6gram.arpa.gz};
# copy both into models/an4/ to ship them. MODEL.md there has the numbers this produced.
set -euo pipefail

AN4=${AN4:-../shared/data/an4}
OUT=${OUT:-runs/an4}
DATA=${DATA:-data/an4}
THREADS=${THREADS:-2}
PRESET=${PRESET:-small}       # network size (asr train --help); medium was no better after stage 2 (MODEL.md)
FEATURE_NORM=${FEATURE_NORM:-utterance}  # asr train --feature-norm; global made the models before X (MODEL.md)
EPOCHS=${EPOCHS:-70}          # stage 1: clean
TUNE_EPOCHS=${TUNE_EPOCHS:-120}  # stage 2: augmented fine-tuning, two runs side by side
TUNE_THREADS=${TUNE_THREADS:-1}  # threads of each stage-2 run
NOISE_PROB=${NOISE_PROB:-1}   # asr train --noise-prob in stage 2; 0.5 was no clear gain and lost in 20 dB noise (MODEL.md)
AUG_RAMP=${AUG_RAMP:-0}       # asr train --augment-ramp in stage 2; 20 epochs of it were no gain (MODEL.md, run R)
RIR_PROB=${RIR_PROB:-0}       # share of stage 2's utterances played in a simulated room (asr train --rir-prob); 0.5
                              # took reverberant dev from 42 % to 20 % greedy but cost clean and noisy dev (MODEL.md, XR)
SEED=${SEED:-0}               # stage 1's seed; stage 2's runs take 2*SEED and 2*SEED+1 (0 gives the shipped X)
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

# Intermediate CTC (30 % of the loss is CTC on the middle LSTM layer's output) in both stages: in stage 2
# alone it took 1.2 points of greedy WER off the soup, in stage 1 as well 1.5 more (MODEL.md). Features
# less each utterance's own mean: 1.9 points more, and telephone-band audio from 78 % to 29 % (run X).
step "stage 1: training on clean audio ($EPOCHS epochs, $THREADS threads)"
resume=()
[[ -f $OUT/train/last.pt ]] && resume=(--resume)
asr train --train "$DATA/an4-train.jsonl" --dev "$DATA/an4-dev.jsonl" --out "$OUT/train" \
    --preset "$PRESET" --feature-norm "$FEATURE_NORM" --epochs "$EPOCHS" --lr 2e-3 --warmup-steps 300 \
    --max-batch-seconds 40 --inter-ctc 0.3 --seed "$SEED" --threads "$THREADS" "${resume[@]}"

# Stage 1's way off the blank plateau is fragile (MODEL.md, "What was tried"): stop here rather than
# fine-tune a model that did not find its alignments.
python - "$OUT/train/best.pt" <<'PY'
import sys
from asr.model import read_checkpoint
wer = read_checkpoint(sys.argv[1])["metadata"].get("dev_wer")
if wer is None or wer > 0.3:
    sys.exit(f"{sys.argv[1]}: stage 1's best dev WER is {wer}, above 0.3: it did not leave CTC's blank "
             "plateau (models/an4/MODEL.md, 'What was tried'); stage 2 would start from a broken model")
print(f"stage 1: best dev WER {100 * wer:.2f} %")
PY

# Augmentation from the start kept the model on CTC's all-blank plateau for many times longer (MODEL.md);
# switched on once the model has found its alignments, it buys robustness to speed and noise.
step "noise for stage 2, built from the training audio"
if [[ ! -f $OUT/noise/babble-8.wav ]]; then
    python recipes/an4/make_noise.py --manifest "$DATA/an4-train.jsonl" --out "$OUT/noise"
fi
# AN4 is close-talking; a laptop or phone on a table hears speech through a room. With RIR_PROB above 0,
# 400 simulated rooms (RT60 0.1-1 s, 0.3-3 m from the microphone; needs pyroomacoustics).
rooms=()
if [[ $RIR_PROB != 0 ]]; then
    step "rooms for stage 2: simulated impulse responses"
    [[ -f $OUT/rirs/rooms.jsonl ]] || python recipes/an4/make_rirs.py --out "$OUT/rirs" --count 400 --seed 0
    rooms=(--rir-dir "$OUT/rirs" --rir-prob "$RIR_PROB")
fi

# Two fine-tuning runs that differ in SpecAugment's time masks (20 and 2) and seed, one thread each side by
# side (on 2 cores that gets 1.3x more done than one run on two threads, BENCHMARKS.md), each averaged over its
# last 10 epochs; the shipped weights are the mean of the two averages (a "model soup": both start from
# the same stage-1 weights, so their mean is a good model, and a better one than either; MODEL.md).
tune() {  # tune NAME TIME_MASKS SEED
    local resume=()
    [[ -f $OUT/$1/last.pt ]] && resume=(--resume)
    asr train --train "$DATA/an4-train.jsonl" --dev "$DATA/an4-dev.jsonl" --out "$OUT/$1" \
        --init "$OUT/train/best.pt" --epochs "$TUNE_EPOCHS" --lr 1e-3 --warmup-steps 200 --max-batch-seconds 40 \
        --speed-perturb "${rooms[@]}" --noise-dir "$OUT/noise" --noise-snr 10,40 --noise-prob "$NOISE_PROB" \
        --augment-ramp "$AUG_RAMP" --shuffle-first-epoch --time-masks "$2" --seed "$3" --inter-ctc 0.3 \
        --keep-epochs 10 --threads "$TUNE_THREADS" "${resume[@]}" >> "$OUT/$1.log" 2>&1
}
step "stage 2: two fine-tuning runs with speed perturbation, ${rooms[*]:+rooms, }noise, intermediate CTC and 20 or 2 time masks ($TUNE_EPOCHS epochs)"
echo "logs: $OUT/tune-a.log, $OUT/tune-b.log"
tune tune-a 20 $((2 * SEED)) & a=$!
tune tune-b 2 $((2 * SEED + 1)) & b=$!
wait $a || { echo "stage 2 run tune-a failed: see $OUT/tune-a.log" >&2; exit 1; }
wait $b || { echo "stage 2 run tune-b failed: see $OUT/tune-b.log" >&2; exit 1; }

mkdir -p "$OUT/export"
step "average each run's last 10 epochs, then the two averages"
for run in tune-a tune-b; do
    asr average --last 10 --run "$OUT/$run" --out "$OUT/$run/avg10.pt"
done
asr average "$OUT/tune-a/avg10.pt" "$OUT/tune-b/avg10.pt" --out "$OUT/export/model.pt"

# The training transcripts lack words that AN4's dates and numbers need (NOVEMBER, DECEMBER, THIRTEEN, TENTH,
# EIGHTEENTH, ...); the beam search can output only the LM's words, so dates-and-numbers.txt adds every month,
# cardinal and ordinal word, each as a one-word sentence. A third of AN4's utterances spell a name, street or
# city letter by letter, so the LM also learns how names are spelled from US census first names and surnames
# and US place names (recipes/an4/names/, made by make_names.py), spelled out (--spell); order 6 lets it
# see five letters back. None of it is taken from AN4.
step "6-gram LM of the training transcripts, every month and number word, and spelled names and places"
asr lm build --manifest "$DATA/an4-train.jsonl" --text recipes/an4/dates-and-numbers.txt \
    --spell recipes/an4/names/first-names.txt recipes/an4/names/surnames.txt recipes/an4/names/places.txt \
    --order 6 --out "$OUT/export/lm-6gram.arpa.gz"

step "tune the LM weight and word score on dev; store them in the model"
# Beam threshold 12 rather than 25: the same dev WER with a third of the decoding time (BENCHMARKS.md).
asr lm tune --model "$OUT/export/model.pt" --manifest "$DATA/an4-dev.jsonl" --lm "$OUT/export/lm-6gram.arpa.gz" \
    --beam-threshold 12 --save "$OUT/export/model.pt"

step "evaluate on dev: greedy, then the stored beam + LM settings"
asr evaluate --model "$OUT/export/model.pt" --manifest "$DATA/an4-dev.jsonl" --decoder greedy \
    --output "$OUT/eval-greedy"
asr evaluate --model "$OUT/export/model.pt" --manifest "$DATA/an4-dev.jsonl" --output "$OUT/eval-lm"

step "done: $OUT/export/model.pt and $OUT/export/lm-6gram.arpa.gz"
