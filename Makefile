# Two commands for a new user: `make demo` (set up + run the nightly DAG on sample photos) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
EXTRAS ?= cpu,openvino,airflow,dev
PORT   ?= 8080
FINETUNE_WORK ?= data/finetune

.PHONY: setup demo ui ocr-demo test test-stack test-fast lint bench-accuracy bench-throughput bench-gpu gpu-pack finetune clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[$(EXTRAS)]"
	touch $@

demo: setup  ## the nightly Airflow DAG on generated photos, embedded default (local store, SQLite)
	$(BIN)/python include/demo.py

ui: setup  ## after `make demo`: the Airflow UI on the demo's runs and tables; prints the URL and the login
	$(BIN)/python include/ui.py --port $(PORT)

ocr-demo: setup  ## the engine alone: generated photos -> JSON lines + overlay PNGs
	$(BIN)/python include/sample_data.py data/samples --count 6
	$(BIN)/wildocr ocr data/samples --out data/samples.jsonl --render data/overlays

test: setup lint  ## every test, then the 25 slowest (those over 1 s)
	$(BIN)/python -m pytest --durations=25 --durations-min=1

test-stack: setup  ## the deployment for real: scripts/stack.sh up + Celery runs checked (needs postgresql, redis-server)
	$(BIN)/python -m pytest tests_stack -s

test-fast: setup  ## the inner loop: everything but the tests marked slow (DAG runs, servers, browser, JVM, installs)
	$(BIN)/python -m pytest -m "not slow" --durations=10 --durations-min=1

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench-accuracy: setup
	$(BIN)/python bench/accuracy.py

finetune: setup  ## docs/accuracy.md's fine-tune recipe on the IC15 tune half (extra `train`, ~90 min on 2 cores), scored beside the stock weights
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[$(EXTRAS),train]"
	BIN=$(BIN) bash bench/finetune_recipe.sh $(FINETUNE_WORK)

bench-throughput: setup
	$(BIN)/python bench/throughput.py

clean:
	rm -rf data airflow_home .pytest_cache .ruff_cache .mypy_cache

bench-gpu: setup  ## GPU run: fresh venv with the gpu extra, CUDA check, photos/s, crops/s, agreement (bench/gpu.py)
	$(BIN)/python bench/gpu.py

gpu-pack: setup  ## bench-gpu for a GPU machine with no package index: parts to carry, then bench/gpu_device.sh there
	$(BIN)/python bench/gpu_pack.py
