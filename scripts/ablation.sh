#!/usr/bin/env bash
# The ablation of issue 43 (docs/ablation.md): one recipe, three starts. EfficientNet-Lite0 from the packaged ImageNet
# weights, Lite0 from scratch and EfficientNetV2-B0 (the old shipped backbone) from scratch, each trained the same way
# (128 px, the whole network, 3 epochs, class-balanced sampling, label smoothing 0.1, AdamW 1e-3 with a cosine
# schedule) on HAM10000's lesion-grouped training split, then scored on its test split. studies/ablation.py writes
# the table with lesion-bootstrap intervals (docs/ablation/ablation.md). CPU: about 15 minutes an arm on 2 cores.
# Usage: scripts/ablation.sh HAM10000_DIR [OUT]
set -euo pipefail
data=${1:?the HAM10000 folder (HAM10000_metadata.csv beside its images)}
out=${2:-real_out/ablation}
bin=.venv/bin
recipe=(--image-size 128 --batch-size 32 --epochs 3 --lr 1e-3 --weight-decay 0.01 --dropout 0.3 --seed 0
    --sampling balanced --no-class-weights --label-smoothing 0.1 --warmup-epochs 0.3 --freeze-stages 0
    --trained-on "HAM10000 (Tschandl et al. 2018, CC BY-NC 4.0), 200x150 redistribution")
arm() {
    local name=$1; shift
    if [[ ! -f "$out/$name/best.safetensors" ]]; then
        echo "== train $name"
        $bin/mnet train --data "$data" --out "$out/$name" "${recipe[@]}" "$@"
    fi
    echo "== score $name on the test split"
    $bin/mnet eval --checkpoint "$out/$name/best.safetensors" --data "$data" --split test --out "$out/$name/eval_test" --json "$out/$name/eval_test.json"
}
arm lite0_imagenet --arch tf_efficientnet_lite0 --pretrained
arm lite0_scratch --arch tf_efficientnet_lite0 --no-pretrained
arm v2b0_scratch --arch tf_efficientnetv2_b0 --no-pretrained
echo "== the table, beside the shipped model (through the runtime) and the B0 it replaced (its kept predictions)"
$bin/python studies/ablation.py --data "$data" --out docs/ablation \
    --run "Lite0, ImageNet weights=$out/lite0_imagenet/eval_test/predictions.csv" \
    --run "Lite0, from scratch=$out/lite0_scratch/eval_test/predictions.csv" \
    --run "V2-B0, from scratch=$out/v2b0_scratch/eval_test/predictions.csv" \
    --bundle "shipped: Lite0, ImageNet weights, 224 px, three stages frozen, 8 epochs=models/ham10000_lite0.onnx" \
    --run "shipped before: V2-B0, from scratch, 128 px, 22 epochs=docs/ablation/ham10000_b0_predictions.csv"
