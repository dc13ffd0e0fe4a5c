#!/usr/bin/env bash
# Retrain the shipped real model (models/ham10000_lite0.onnx) from HAM10000 and reproduce its figures (docs/real/,
# quoted in docs/model-card.md): train, calibrate on the validation split, FastCAV vectors for PH2's dermoscopic
# structures, export verified against PyTorch, then the figures through the torch-free runtime.
# Usage: scripts/real.sh HAM10000_DIR REAL_DIR [OUT]   (REAL_DIR holds ph2/, pad-ufes-20/ and isic2017/)
set -euo pipefail
data=${1:?the HAM10000 folder (HAM10000_metadata.csv beside its images)}
real=${2:?the folder that holds ph2/, pad-ufes-20/ and isic2017/}
out=${3:-real_out}
bin=.venv/bin
mkdir -p "$out" models docs/real
echo "== 1/5 fine-tune EfficientNet-Lite0 from its packaged ImageNet weights at 224 px on HAM10000, split by lesion"
echo "   (CPU: about 45 minutes on 2 cores; stem and first 3 stages frozen, classes drawn equally often, EMA)"
$bin/mnet train --data "$data" --out "$out/train" --arch tf_efficientnet_lite0 --pretrained --image-size 224 \
    --batch-size 32 --epochs 8 --early-stopping 3 --lr 1e-3 --weight-decay 0.01 --dropout 0.3 --seed 0 \
    --freeze-stages 3 --sampling balanced --no-class-weights --label-smoothing 0.1 --ema 0.998 --warmup-epochs 0.3 \
    --trained-on "HAM10000 (Tschandl et al. 2018, CC BY-NC 4.0), 200x150 redistribution"
echo "== 2/5 calibrate on the validation split: temperature, and refer when p(MEL) keeps melanoma sensitivity >= 0.95"
$bin/mnet calibrate --checkpoint "$out/train/best.safetensors" --data "$data" -o "$out/calib.json" \
    --target-sensitivity MEL:0.95
echo "== 3/5 FastCAV vectors for PH2's dermoscopic structures (carried where held-out accuracy >= 0.75)"
cavs=()
if $bin/mnet concepts train --checkpoint "$out/train/best.safetensors" --concepts "$real/ph2" \
    -o "$out/cavs.safetensors" --json "$out/cavs.json" --min-accuracy 0.75; then
    cavs=(--cavs "$out/cavs.safetensors")
fi
cp "$out/cavs.json" docs/real/concepts.json
cp "$out/calib.json" docs/real/calibration.json
echo "== 4/5 export at the training size, verified against PyTorch on the samples"
$bin/mnet-export all "$out/train/best.safetensors" -o "$out/export" --image-size 224 --images assets/samples \
    --calibration "$out/calib.json" --dynamic-batch "${cavs[@]}"
cp "$out/export/model.onnx" models/ham10000_lite0.onnx
cp "$out/export/model.onnx.json" models/ham10000_lite0.onnx.json
echo "== 5/5 figures on the held-out split, PAD-UFES-20 and ISIC 2017 (torch-free runtime, the shipped bundle)"
$bin/python studies/real_figures.py --bundle models/ham10000_lite0.onnx --data "$real" --out docs/real \
    --history "$out/train/history.json"
