#!/usr/bin/env bash
# ResNet-18 (CIFAR stem) on full Fashion-MNIST in the memorising regime: train the original, then every
# method against Retrain on random 10 %, one seed. Meant for a GPU; each finished row is written at once.
#   benchmarks/resnet18_fmnist.sh OUT_DIR [EPOCHS] [DATASET] [METHODS]
# The original is kept in runs/ (it is too large to sit beside the tables); Retrain repeats its recipe.
# On an H200 the original, Retrain and the first ten methods take about 9.5 minutes: where one command may
# run 10 minutes, name the rest in METHODS in a second command on the same machine (the original is reused)
# and join the two tables with benchmarks/merge_bench_rows.py, which checks that Retrain repeated.
# Measured on an H200: the original 60-80 s, each bench's start and Retrain about 90 s, a method 3-40 s; class 3
# (bench --forget class:3) with Retrain and nine methods about 6 minutes.
set -euo pipefail
out=${1:?usage: benchmarks/resnet18_fmnist.sh OUT_DIR [EPOCHS] [DATASET] [METHODS]}
epochs=${2:-15}
dataset=${3:-fashion-mnist}
# the two WSS-CL variants and SalUn first: on a machine lent for a short time they are the rows that matter most
methods=${4:-wsscl,wsscl_paper,salun,ft,l1_sparse,rl,iu,ga,bs,be,cl,wscl,wsscl_budget}
python=${PYTHON:-python3}
# The recorded tables' originals cut ragged batches (60,000 images leave 96 over), so a rerun repeats them and
# merge_bench_rows.py can join new rows; BATCHING=even trains as `train` does by default.
batching=${BATCHING:-ragged}
mkdir -p "$out" runs
suffix=""; [ "$batching" = ragged ] || suffix="_$batching"  # the recorded commands' path for ragged
original=runs/resnet18_${dataset}_e${epochs}${suffix}.pt
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no GPU found: running on CPU"
"$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
[ -f "$original" ] || "$python" -m wsscl_core train --dataset "$dataset" --model resnet18 --epochs "$epochs" --batching "$batching" --out "$original"
"$python" -m wsscl_core bench --checkpoint "$original" --forget random:0.1 --seeds 1 --out-dir "$out" --methods "$methods"
