#!/usr/bin/env bash
# Puts into .whl/ (git-ignored) the packages scripts/gpu_check.sh needs that the lent GPU machine's Python lacks
# (Python 3.12 on x86-64, as the device tool's KINDS.md lists it); the device call carries .whl. grad-cam and
# ttach are pure Python and published as source only, so they are built here; isal is downloaded for 3.12.
set -eu
cd "$(dirname "$0")/.."
mkdir -p .whl
python3 -m pip wheel -q --no-deps -w .whl grad-cam==1.5.7 ttach==0.0.3
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
    isal==1.9.1
ls -l .whl
