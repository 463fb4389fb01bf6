#!/usr/bin/env bash
# One GPU check, run on a lent GPU machine (no dvc, no mlflow there) or, tiny, on the CPU:
#   benchmarks/gpu_check.sh                          # GPU: benchmarks + real-data CUHK03 run
#   TINY=1 benchmarks/gpu_check.sh                   # CPU rehearsal on the generated data
# Real data: copy ../shared/data/cuhk03-np-pair1-256x128 to gpu_data/ (ignored by git) and
# carry it. Writes the log, params, metrics and results tables to $OUT (default: gpu_out/).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
EPOCHS=${EPOCHS:-30}
DATA=${DATA:-gpu_data/cuhk03-np-pair1-256x128}
export PYTHONPATH=$PWD

nvidia-smi -L || echo "no nvidia-smi"
python -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__, \
'cuda', torch.cuda.is_available() and torch.cuda.get_device_name(0))"

if [ -n "${TINY:-}" ]; then
  python benchmarks/bench_training.py --device cpu --height 64 --width 32 --batch-size 16 \
    --steps 2 --warmup 1 --workers 1 --ids 16
  python benchmarks/bench_evaluation.py --size small --device cpu
  SIZE="height: 64, width: 32"; EPOCHS=1; SOURCE=generated; BATCH=16; WORKERS=1
else
  python benchmarks/bench_training.py --steps 100 --warmup 10 --workers 12
  python benchmarks/bench_training.py --steps 100 --warmup 10 --workers 12 --channels-last \
    --backbones resnet50
  python benchmarks/bench_evaluation.py --size market --device cuda
  SIZE="height: 256, width: 128"; SOURCE=$DATA; BATCH=64; WORKERS=12
fi

# The real-data run: the stage scripts in pipeline order, tracking off, CUHK03 only.
python - "$OUT/params.yaml" "$SOURCE" "$EPOCHS" "$BATCH" "$SIZE" "$WORKERS" <<'PY'
import sys, yaml
out, source, epochs, batch, size, workers = sys.argv[1:]
p = yaml.safe_load(open("params.yaml"))
p["datasets"] = ["cuhk03"]
p["data"]["cuhk03"]["source"] = source
p["input"].update(yaml.safe_load("{" + size + "}"))
warmup = max(1, int(epochs) // 6)
p["train"].update(epochs=int(epochs), batch_size=int(batch), lr=3.5e-4, warmup_epochs=warmup,
                  milestones=[int(int(epochs) * 0.5), int(int(epochs) * 0.9)],
                  num_workers=int(workers))
p["tracking"]["enabled"] = False
yaml.safe_dump(p, open(out, "w"), sort_keys=False)
PY
P="--params $OUT/params.yaml --dataset cuhk03"
timed() { local start=$SECONDS; "$@"; echo "WALL $((SECONDS - start)) s: $*"; }
timed python stages/download.py $P
timed python stages/split.py $P
for backbone in resnet50 effnetv2 resnet50_ibn_a; do
  timed python stages/train.py $P --backbone "$backbone" --quiet
done
timed python stages/extract_features.py $P
timed python stages/evaluate.py $P
timed python stages/rerank.py $P
cp results/cuhk03/results.md results/cuhk03/results.csv metrics/cuhk03/*.json "$OUT"/
cat results/cuhk03/results.md
