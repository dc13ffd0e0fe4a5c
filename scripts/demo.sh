#!/usr/bin/env bash
# The main job end to end: synthesize data, train b0 briefly on CPU, evaluate, export (verified against
# PyTorch), and explain the five real ISIC sample images with the torch-free runtime.
set -euo pipefail
out=${1:-demo_out}
bin=.venv/bin
mkdir -p "$out"
echo "== 1/7 synthesize lesions (ISIC 2019 layout)"
$bin/mnet synth "$out/data" --count 1200 --size 128 --seed 0
echo "== 2/7 train tf_efficientnetv2_b0 (demo weights, CPU, a few minutes)"
$bin/mnet train --data "$out/data" --out "$out/run" --epochs 12 --image-size 128 --batch-size 16 --lr 1e-3
echo "== 3/7 calibrate on the validation split (temperature, 20 % referral rate), evaluate on the held-out split"
$bin/mnet calibrate --checkpoint "$out/run/best.safetensors" --data "$out/data" -o "$out/calib.json" --referral-rate 0.2
$bin/mnet synth-ood "$out/ood" --count 120 --seed 0
$bin/mnet eval --data "$out/data" --checkpoint "$out/run/best.safetensors" --calibration "$out/calib.json" \
    --ood "$out/ood" --json "$out/eval.json"
echo "== 4/7 FastCAV concept vectors (synthetic concept sets, embeddings at the export's 224 px)"
$bin/mnet concepts synth "$out/concepts" --count 100 --size 224 --seed 0
$bin/mnet concepts train --checkpoint "$out/run/best.safetensors" --concepts "$out/concepts" \
    -o "$out/cavs.safetensors" --json "$out/cavs.json" --image-size 224
echo "== 5/7 export: onnx -> verify -> check (-> trt where TensorRT and a GPU exist)"
$bin/mnet-export all "$out/run/best.safetensors" -o "$out/export" --image-size 224 --images assets/samples \
    --cavs "$out/cavs.safetensors" --calibration "$out/calib.json" --dynamic-batch
echo "== 6/7 explain the real sample images (torch-free runtime)"
# --force: a rerun retrains, so its bundle differs from the one that made the reports already there
$bin/mnet run assets/samples --model "$out/export/model.onnx" -o "$out/reports" --mc-samples 30 --seed 0 --force
echo "== 7/7 serve the bundle on NVIDIA Triton (loopback) and explain the samples through it"
port=${MNET_DEMO_PORT:-18080}
$bin/mnet serve --model "$out/export/model.onnx" --http-port "$port" --grpc-port $((port + 1)) \
    --metrics-port $((port + 2)) > "$out/serve.log" 2>&1 &
server=$!
trap 'kill -TERM $server 2>/dev/null || true' EXIT
for _ in $(seq 240); do
    $bin/python -c "import urllib.request as r; r.urlopen('http://127.0.0.1:$port/v2/health/ready', timeout=2)" \
        2> /dev/null && break
    kill -0 $server 2>/dev/null || { cat "$out/serve.log"; exit 1; }
    sleep 0.5
done
$bin/mnet run assets/samples --server "http://127.0.0.1:$port" -o "$out/served" --concurrency 4 --force
kill -TERM $server && wait $server
trap - EXIT
echo
echo "Reports and panels: $out/reports (open $out/reports/ISIC_0034376.png); the same through Triton: $out/served."
echo "Demo weights were trained on synthetic lesions: the outputs are not about these lesions and not for diagnosis."
