VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SERVING_VENV ?= .venv-serve
SERVING_STAMP := $(SERVING_VENV)/.installed
DEMO_DIR ?= demo_out
REAL ?= ../shared/data/real
DATA ?= $(REAL)/ham10000
REAL_OUT ?= real_out

LOCK_TOOLS := .venv-lock
PIP_COMPILE := $(LOCK_TOOLS)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
	--no-emit-index-url --no-emit-find-links

.PHONY: install test test-gpu demo real abcd precision bench bench-cuda bench-serving lint lock clean

# Both environments install exactly the locked versions (requirements/*.txt, with hashes; `make lock` refreshes
# them), then the project itself without touching them.
$(STAMP): requirements/dev.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --no-deps --require-hashes -r requirements/dev.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# The serving environment: Triton's Python backend stub runs the model with numpy < 2 (see
# runtime/serving/server.py); mnet serve finds it here.
$(SERVING_STAMP): requirements/serve.txt
	test -x $(SERVING_VENV)/bin/python || python3 -m venv $(SERVING_VENV)
	$(SERVING_VENV)/bin/python -m pip install --quiet --no-deps --require-hashes -r requirements/serve.txt
	touch $(SERVING_STAMP)

install: $(STAMP) $(SERVING_STAMP)

test: $(STAMP) $(SERVING_STAMP)
	$(PY) -m runtime.hardware
	$(VENV)/bin/lint-imports
	MNET_REQUIRE_SERVING=1 $(PY) -m pytest -q -m "not gpu" tests

test-gpu: $(STAMP)
	$(PY) -m pytest -q -m gpu tests

bench: $(STAMP)
	$(PY) -m pytest benchmarks -o python_files='bench_*.py' -p no:cacheprovider --benchmark-only --benchmark-min-rounds=3 --benchmark-max-time=0.5 --benchmark-columns=median,iqr,ops --benchmark-json=.benchmarks/latest.json

bench-cuda: $(STAMP)
	$(PY) -m pytest benchmarks/bench_cuda.py -o python_files='bench_*.py' -p no:cacheprovider --benchmark-only --benchmark-min-rounds=5 --benchmark-max-time=0.5 --benchmark-columns=median,iqr --benchmark-json=.benchmarks/cuda.json

demo: $(STAMP) $(SERVING_STAMP)
	bash scripts/demo.sh $(DEMO_DIR)

# Retrain the shipped real model (models/ham10000_lite0.onnx) and reproduce its figures (docs/real/): DATA is a
# HAM10000 folder (the release's metadata CSV beside its images), REAL the folder with ph2/, pad-ufes-20/, isic2017/.
real: $(STAMP)
	bash scripts/real.sh $(DATA) $(REAL) $(REAL_OUT)

# The ABCD analysis's segmenter (trained on HAM10000's masks, about 25 CPU minutes) and its rules (fitted to PH2's
# dermatologists), then their figures against experts (docs/abcde.md, "Real dermoscopy").
abcd: $(STAMP)
	$(VENV)/bin/mnet train-segmenter $(REAL)/ham10000 --clinical $(REAL)/pad-ufes-20 --folds-dir build/segmenter-folds
	$(VENV)/bin/mnet fit-abcd $(REAL)/ph2
	$(PY) -m studies.abcd_agreement $(REAL)/ph2 $(REAL)/isic2017 $(REAL)/pad-ufes-20 $(REAL)/ham10000 \
		--segmenter-folds build/segmenter-folds --json docs/abcde/agreement.json

# The precision table (docs/precision.md): the shipped model's FP16/INT8/BF16 fidelity on REAL's held-out images,
# then the speed of each precision beside the reference pipeline (S at 384 px, B0 at 224 px).
precision: $(STAMP)
	$(PY) studies/precision_fidelity.py --data $(REAL) --out docs/precision
	$(PY) -m pytest benchmarks/bench_precision.py -o python_files='bench_*.py' -p no:cacheprovider --benchmark-only \
		--benchmark-min-rounds=5 --benchmark-max-time=1 --benchmark-columns=median,iqr \
		--benchmark-json=.benchmarks/precision.json

bench-serving: $(STAMP) $(SERVING_STAMP)
	$(PY) -m benchmarks.serving --model $(DEMO_DIR)/export/model.onnx --images assets/samples

lint: $(STAMP)
	$(VENV)/bin/ruff check melanomanet export runtime tests benchmarks studies scripts
	$(VENV)/bin/lint-imports

# Refresh the locks after changing a dependency in pyproject.toml, requirements/pins.in or
# runtime/serving/requirements.txt, or to take new releases on purpose (then run make test on the result).
lock:
	test -x $(LOCK_TOOLS)/bin/pip-compile || { python3 -m venv $(LOCK_TOOLS) && $(LOCK_TOOLS)/bin/pip install --quiet pip-tools==7.6.2; }
	$(PIP_COMPILE) --extra train --extra export --extra dev --extra serve --extra openvino --extra ray -o requirements/dev.txt pyproject.toml requirements/pins.in
	$(PIP_COMPILE) -o requirements/serve.txt runtime/serving/requirements.txt
	$(PIP_COMPILE) --extra serve -o requirements/runtime.txt pyproject.toml

clean:
	rm -rf $(DEMO_DIR) .pytest_cache .benchmarks
