#!/usr/bin/env bash
# The main job end to end: synthesize data, train b0 briefly on CPU, evaluate, export (verified against
# PyTorch), and explain the five real ISIC sample images with the torch-free runtime.
set -euo pipefail
out=${1:-demo_out}
bin=.venv/bin
mkdir -p "$out"
echo "== 1/6 synthesize lesions (ISIC 2019 layout)"
$bin/mnet synth "$out/data" --count 1200 --size 128 --seed 0
echo "== 2/6 train tf_efficientnetv2_b0 (demo weights, CPU, a few minutes)"
$bin/mnet train --data "$out/data" --out "$out/run" --epochs 12 --image-size 128 --batch-size 16 --lr 1e-3
echo "== 3/6 calibrate on the validation split (temperature, 20 % referral rate), evaluate on the held-out split"
$bin/mnet calibrate --checkpoint "$out/run/best.safetensors" --data "$out/data" -o "$out/calib.json" --referral-rate 0.2
$bin/mnet synth-ood "$out/ood" --count 120 --seed 0
$bin/mnet eval --data "$out/data" --checkpoint "$out/run/best.safetensors" --calibration "$out/calib.json" \
    --ood "$out/ood" --json "$out/eval.json"
echo "== 4/6 FastCAV concept vectors (synthetic concept sets, embeddings at the export's 224 px)"
$bin/mnet concepts synth "$out/concepts" --count 100 --size 224 --seed 0
$bin/mnet concepts train --checkpoint "$out/run/best.safetensors" --concepts "$out/concepts" \
    -o "$out/cavs.safetensors" --json "$out/cavs.json" --image-size 224
echo "== 5/6 export: onnx -> verify -> check (-> trt where TensorRT and a GPU exist)"
$bin/mnet-export all "$out/run/best.safetensors" -o "$out/export" --image-size 224 --images assets/samples \
    --cavs "$out/cavs.safetensors" --calibration "$out/calib.json"
echo "== 6/6 explain the real sample images (torch-free runtime)"
$bin/mnet run assets/samples --model "$out/export/model.onnx" -o "$out/reports" --mc-samples 30 --seed 0
echo
echo "Reports and panels: $out/reports (open $out/reports/ISIC_0034376.png)."
echo "Demo weights were trained on synthetic lesions: the outputs are not about these lesions and not for diagnosis."
