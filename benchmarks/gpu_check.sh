#!/usr/bin/env bash
# One GPU check, run on a lent GPU machine (no dvc, no mlflow there) or, tiny, on the CPU:
#   benchmarks/gpu_check.sh                          # GPU: benchmarks + real-data CUHK03 run
#   TINY=1 benchmarks/gpu_check.sh                   # CPU rehearsal on the generated data
#   PARTS="compile eval" benchmarks/gpu_check.sh     # only some parts (default: bench eval real;
#                                                      also: compile, fp16 (GPU only))
# Real data: copy ../shared/data/cuhk03-np-pair1-256x128 to gpu_data/ (ignored by git) and
# carry it. The training epochs are chosen from the measured throughput so that training takes
# about TRAIN_BUDGET seconds (or set EPOCHS). Every step has its own time limit and a failed
# step does not stop the later ones. Writes the log and gpu_outputs.tgz (params, metrics,
# results tables, training curves, benchmark JSON) to $OUT (default: gpu_out/).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
PY=${PYTHON:-$(command -v python || command -v python3)}
DATA=${DATA:-gpu_data/cuhk03-np-pair1-256x128}
TRAIN_BUDGET=${TRAIN_BUDGET:-160}
PARTS=" ${PARTS:-bench eval real} "
part() { [[ "$PARTS" == *" $1 "* ]]; }
export PYTHONPATH=$PWD
SCRIPT_START=$SECONDS

# step LIMIT_S COMMAND...: run with a time limit, print its wall time, never abort the script.
step() {
  local limit=$1 start=$SECONDS status; shift
  timeout "$limit" "$@"; status=$?
  echo "WALL $((SECONDS - start)) s (status $status, at $((SECONDS - SCRIPT_START)) s): $*"
}

date -u
nvidia-smi -L || echo "no nvidia-smi"
$PY -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__, \
'cuda', torch.cuda.is_available() and torch.cuda.get_device_name(0))"

if [ -n "${TINY:-}" ]; then
  BENCH="--device cpu --height 64 --width 32 --batch-size 16 --steps 2 --warmup 1 --workers 1 \
    --ids 16"
  EVAL="--size small --device cpu"
  SIZE="height: 64, width: 32"; SOURCE=generated; BATCH=16; WORKERS=1; PIPELINE=device
  TRAIN_IMAGES=400
else
  BENCH="--steps 100 --warmup 10 --workers 12 --channels-last"
  EVAL="--size market --device cuda"
  SIZE="height: 256, width: 128"; SOURCE=$DATA; BATCH=64; WORKERS=12; PIPELINE=auto
  TRAIN_IMAGES=4145  # CUHK03-NP pair 1, detected, train split
fi
part bench && step 150 $PY benchmarks/bench_training.py $BENCH --json "$OUT/bench_training.json"
part compile && step 300 $PY benchmarks/bench_training.py $BENCH --compile --pipelines device \
  --backbones resnet50 effnetv2 --json "$OUT/bench_compile.json"
part fp16 && step 200 $PY benchmarks/bench_training.py $BENCH --pipelines device \
  --backbones resnet50 effnetv2 --amp-dtype float16 --json "$OUT/bench_fp16.json"
part eval && step 150 $PY benchmarks/bench_evaluation.py $EVAL --skip-oracle
if ! part real; then
  echo "TOTAL $((SECONDS - SCRIPT_START)) s"
  exit 0
fi

# Epochs: as many as fit TRAIN_BUDGET seconds for the three backbones at the measured
# end-to-end rates (the best pipeline of each), between 10 and 120.
EPOCHS=${EPOCHS:-$($PY - "$OUT/bench_training.json" "$TRAIN_BUDGET" "$TRAIN_IMAGES" <<'PY'
import json, sys
try:
    figures = json.load(open(sys.argv[1]))["backbones"]
    seconds_per_epoch = sum(
        int(sys.argv[3]) / max(v for k, v in f.items() if k in ("loader", "device"))
        for f in figures.values()
    )
    print(max(10, min(120, int(float(sys.argv[2]) / seconds_per_epoch))))
except Exception as err:  # no benchmark figures: a safe default
    print(30, file=sys.stdout)
    print(f"epochs from the benchmark failed: {err}", file=sys.stderr)
PY
)}
[ -n "${TINY:-}" ] && EPOCHS=1
echo "EPOCHS $EPOCHS (training budget ${TRAIN_BUDGET} s)"

# The real-data run: the stage scripts in pipeline order, tracking off, CUHK03 only.
$PY - "$OUT/params.yaml" "$SOURCE" "$EPOCHS" "$BATCH" "$SIZE" "$WORKERS" "$PIPELINE" <<'PY'
import sys, yaml
out, source, epochs, batch, size, workers, pipeline = sys.argv[1:]
epochs = int(epochs)
p = yaml.safe_load(open("params.yaml"))
p["datasets"] = ["cuhk03"]
p["data"]["cuhk03"]["source"] = source
p["input"].update(yaml.safe_load("{" + size + "}"))
p["input"]["padding"] = int(10 * p["input"]["width"] / 128 + 0.5)  # the recipe: 10 px at 128 wide
# The recipe's shape (warm-up 10 of 120 epochs, decay at 1/2 and 5/6 as BoT), scaled to `epochs`.
p["train"].update(epochs=epochs, batch_size=int(batch), lr=3.5e-4,
                  warmup_epochs=max(1, round(epochs / 12)),
                  milestones=[max(1, epochs // 2), max(2, epochs * 5 // 6)],
                  num_workers=int(workers), input_pipeline=pipeline)
p["tracking"]["enabled"] = False
yaml.safe_dump(p, open(out, "w"), sort_keys=False)
PY
sed -n '/^input:/,/^models:/p' "$OUT/params.yaml"
P="--params $OUT/params.yaml --dataset cuhk03"
step 120 $PY stages/download.py $P
step 60 $PY stages/split.py $P
# scoring during training against an epoch, on the real test split (GPU path on CUDA)
step 240 $PY benchmarks/bench_eval_during_training.py $P --epochs 3 --repeats 3
for backbone in resnet50 effnetv2 resnet50_ibn_a; do
  step 300 $PY stages/train.py $P --backbone "$backbone" --quiet
done
step 180 $PY stages/extract_features.py $P
step 60 $PY stages/evaluate.py $P
step 120 $PY stages/rerank.py $P
cat results/cuhk03/results.md
# the evaluations inside the real training runs: seconds each against the epoch's
$PY - <<'PY'
import pandas as pd
for backbone in ("resnet50", "effnetv2", "resnet50_ibn_a"):
    try:
        evals = pd.read_csv(f"plots/train/{backbone}/cuhk03/eval.csv")
        epochs = pd.read_csv(f"plots/train/{backbone}/cuhk03/curves.csv")
    except OSError as err:
        print(backbone, "no curves:", err)
        continue
    print(f"{backbone}: {len(evals)} evaluations, {evals['eval_seconds'].median():.2f} s each "
          f"(median), training epoch {epochs['epoch_seconds'].median():.2f} s")
PY
tar czf "$OUT/gpu_outputs.tgz" "$OUT/params.yaml" results/cuhk03 metrics/cuhk03 \
  plots/train/*/cuhk03 "$OUT/bench_training.json" 2>/dev/null
echo "TOTAL $((SECONDS - SCRIPT_START)) s"
