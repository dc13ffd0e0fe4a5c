#!/usr/bin/env bash
# The main job end to end: synthesize data, train b0 briefly on CPU, evaluate, export, run on real samples.
set -euo pipefail
out=${1:-demo_out}
bin=.venv/bin
mkdir -p "$out"
echo "== 1/3 synthesize lesions (ISIC 2019 layout)"
$bin/mnet synth "$out/data" --count 480 --size 128 --seed 0
echo "== 2/3 train tf_efficientnetv2_b0 (demo weights, CPU, about two minutes)"
$bin/mnet train --data "$out/data" --out "$out/run" --epochs 4 --image-size 128 --batch-size 8 --lr 3e-3
echo "== 3/3 evaluate on the held-out split"
$bin/mnet eval --data "$out/data" --checkpoint "$out/run/best.safetensors" --json "$out/eval.json"
echo "Demo weights were trained on synthetic lesions: not for diagnosis."
