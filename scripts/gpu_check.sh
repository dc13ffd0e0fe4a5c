#!/usr/bin/env bash
# One prepared run on a lent CUDA machine whose python3 already has PyTorch (CUDA), timm, onnx and onnxruntime:
# the CUDA tests, the pipelined `mnet run` against one image at a time with the graph on CUDA (issue 17, item 4),
# training and evaluation on CUDA (AMP, a torchrun launch with SyncBatchNorm), the PyTorch CUDA benchmark (our
# one-pass graph against the reference pipeline) and the FastCAV study. Wheels missing there (grad-cam, ttach,
# isal) travel in .whl/: make them with scripts/gpu_wheels.sh and carry .whl. Everything lands in
# ${OUT:-gpu_out}/results.tar.gz (re-packed after each step, so a cut-off run still returns what finished)
# and ${OUT:-gpu_out}/log.txt.
# With HAM10000 on that machine (HAM=folder), also the GPU recipe of the real model (issue 31): the paper's
# EfficientNetV2-M at 384 px for 50 epochs, from ImageNet weights where timm's cache has them, within RECIPE_SECONDS.
# Where TensorRT is installed, FP16 and explicitly quantized INT8 engines of the shipped model, built and timed.
#   usage: bash scripts/gpu_check.sh [BENCH_SECONDS] [STUDY_SECONDS] [RECIPE_SECONDS]
set -u
out=${OUT:-gpu_out}
work=$(mktemp -d)
bench_seconds=${1:-170}
study_seconds=${2:-210}
recipe_seconds=${3:-0}
mkdir -p "$out"
exec > >(tee -a "$out/log.txt") 2>&1
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
pack() { tar -czf "$out/results.tar.gz" -C "$work" --exclude='data-*' --exclude='concepts' --exclude='*.safetensors' . ; }
elapsed() { echo "== $1 (at ${SECONDS}s)"; }

if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=$PYTHONPATH:/tmp/site
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$work/device.txt"
python3 -c "import torch, timm, onnx, onnxruntime, pytorch_grad_cam; print('torch', torch.__version__, 'cuda', \
torch.version.cuda, 'cudnn', torch.backends.cudnn.version(), 'timm', timm.__version__, 'onnx', onnx.__version__, \
'onnxruntime', onnxruntime.__version__, 'gpu', torch.cuda.get_device_name())" | tee -a "$work/device.txt"
pack

elapsed "CUDA tests: the one-pass graph on CUDA (fp32, fp16) equals the ONNX bundle"
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_torch_backend.py --junitxml="$work/tests.xml"
pack

elapsed "Pipelined mnet run with the graph on CUDA: 100 images one at a time and with 2 to 16 workers"
for model in tf_efficientnetv2_s@384 tf_efficientnetv2_b0@224; do
    timeout 90 python3 -m benchmarks.pipeline --graph "$model" --device cuda --count 100 --workers 2,4,8,16 \
        --out "$work/pipeline-$model.json"
    pack
done

elapsed "Training on CUDA (AMP), a torchrun launch with --sync-bn, evaluation on CUDA with bootstrap intervals"
mnet="python3 -m runtime"
$mnet synth "$work/data-train" --count 240 --size 128 --seed 0 > /dev/null
timeout 150 $mnet train --data "$work/data-train" --out "$work/train" --epochs 4 --image-size 128 --batch-size 32 \
    --lr 2e-3 --early-stopping 3 --save-every 2
timeout 90 $mnet train --data "$work/data-train" --out "$work/train-torchrun" --epochs 2 --image-size 128 \
    --batch-size 32 --nproc 1 --sync-bn
timeout 90 $mnet eval --data "$work/data-train" --checkpoint "$work/train/best.safetensors" --out "$work/train/eval" \
    --bootstrap 200 --json "$work/train/eval.json"
pack

elapsed "PyTorch CUDA benchmark, one JSON per model"
deadline=$((SECONDS + bench_seconds))
for model in tf_efficientnetv2_b0@224 tf_efficientnetv2_b0@384 tf_efficientnetv2_m@384 tf_efficientnetv2_s@224 \
             tf_efficientnetv2_s@384 tf_efficientnetv2_m@224; do
    left=$((deadline - SECONDS))
    if [ "$left" -lt 20 ]; then echo "skipped $model: benchmark time used up"; continue; fi
    MNET_CUDA_ARCHS=${model%@*} MNET_CUDA_SIZES=${model#*@} timeout "$left" python3 -m pytest -q \
        benchmarks/bench_cuda.py -o python_files='bench_*.py' -p no:cacheprovider --benchmark-only \
        --benchmark-min-rounds=5 --benchmark-max-time=0.5 --benchmark-columns=median,iqr \
        --benchmark-json="$work/bench-$model.json" > "$work/bench-$model.log" 2>&1
    tail -n 12 "$work/bench-$model.log"
    pack
done

elapsed "FastCAV study: recipes x synthetic draws"
timeout $((study_seconds + 30)) python3 studies/cav_study.py "$work/study" --deadline-s "$study_seconds" \
    --parallel 9 --workers 1
pack
if [ -d "${HAM:-}" ] && [ "$recipe_seconds" -gt 0 ]; then
    elapsed "GPU recipe: tf_efficientnetv2_m at 384 px on HAM10000, 50 epochs, split by lesion"
    pretrained=$(python3 -c "import timm; timm.create_model('tf_efficientnetv2_m', pretrained=True)" 2>/dev/null \
        && echo --pretrained || echo --no-pretrained)
    timeout "$recipe_seconds" $mnet train --data "$HAM" --out "$work/recipe-m384" --arch tf_efficientnetv2_m \
        --image-size 384 --epochs 50 --batch-size 32 --lr 1e-4 --loss focal --early-stopping 8 $pretrained \
        --trained-on "HAM10000 (Tschandl et al. 2018, CC BY-NC 4.0)"
    timeout 300 $mnet eval --data "$HAM" --checkpoint "$work/recipe-m384/best.safetensors" \
        --out "$work/recipe-m384/eval" --bootstrap 1000 --json "$work/recipe-m384/eval.json"
    pack
fi
if python3 -c "import tensorrt" 2>/dev/null; then
    elapsed "TensorRT engines of the shipped model: FP16 from the FP32 bundle, INT8 from its QDQ bundle (explicit)"
    cp models/ham10000_lite0.onnx models/ham10000_lite0.onnx.json "$work/"
    # On the workstation the INT8 bundle is made on real images and refused below the fidelity targets; here the
    # five samples only give TensorRT its Q/DQ graph to build (the fidelity written beside it says nothing).
    timeout 300 python3 -m export.cli quantize "$work/ham10000_lite0.onnx" --precision int8 --target tensorrt \
        --calib assets/samples --method minmax --accept-fidelity -o "$work/int8.onnx"
    for precision in fp16 int8; do
        source_bundle=$([ "$precision" = int8 ] && echo "$work/int8.onnx" || echo "$work/ham10000_lite0.onnx")
        timeout 600 python3 -m export.cli trt "$source_bundle" "--$precision" -o "$work/$precision.engine" \
            --mc-samples 1:30:64 && timeout 120 $mnet bench --model "$work/$precision.engine" --backend tensorrt \
            --images assets/samples --json "$work/bench-trt-$precision.json"
        pack
    done
fi
elapsed "done"
