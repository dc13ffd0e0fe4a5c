VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SERVING_VENV ?= .venv-serve
SERVING_STAMP := $(SERVING_VENV)/.installed
DEMO_DIR ?= demo_out

.PHONY: install test test-gpu demo bench bench-cuda bench-serving lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e ".[train,export,dev]"
	touch $(STAMP)

# The serving environment: Triton's Python backend stub runs the model with numpy < 2 (see
# runtime/serving/server.py); mnet serve finds it here.
$(SERVING_STAMP): runtime/serving/requirements.txt
	test -x $(SERVING_VENV)/bin/python || python3 -m venv $(SERVING_VENV)
	$(SERVING_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SERVING_VENV)/bin/python -m pip install --quiet -r runtime/serving/requirements.txt
	touch $(SERVING_STAMP)

install: $(STAMP) $(SERVING_STAMP)

test: $(STAMP) $(SERVING_STAMP)
	MNET_REQUIRE_SERVING=1 $(PY) -m pytest -q -m "not gpu" tests

test-gpu: $(STAMP)
	$(PY) -m pytest -q -m gpu tests

bench: $(STAMP)
	$(PY) -m pytest benchmarks -o python_files='bench_*.py' -p no:cacheprovider --benchmark-only --benchmark-min-rounds=3 --benchmark-max-time=0.5 --benchmark-columns=median,iqr,ops --benchmark-json=.benchmarks/latest.json

bench-cuda: $(STAMP)
	$(PY) -m pytest benchmarks/bench_cuda.py -o python_files='bench_*.py' -p no:cacheprovider --benchmark-only --benchmark-min-rounds=5 --benchmark-max-time=0.5 --benchmark-columns=median,iqr --benchmark-json=.benchmarks/cuda.json

demo: $(STAMP) $(SERVING_STAMP)
	bash scripts/demo.sh $(DEMO_DIR)

bench-serving: $(STAMP) $(SERVING_STAMP)
	$(PY) -m benchmarks.serving --model $(DEMO_DIR)/export/model.onnx --images assets/samples

lint: $(STAMP)
	$(VENV)/bin/ruff check melanomanet export runtime tests benchmarks studies scripts

clean:
	rm -rf $(DEMO_DIR) .pytest_cache .benchmarks
