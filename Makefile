# Two commands on a fresh machine: `make run` (train + evaluate the default experiment), `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.rlmem-installed
TORCH  ?= torch==2.13.0
RUN_DIR ?= runs/tmaze_lstm

.PHONY: setup run test test-slow lint bench clean

# torch first: pinned, it takes the CPU build where one is provided (an unpinned torch pulls CUDA wheels).
$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP)

run: setup
	$(PY) -m rlmem.train experiment=tmaze_lstm run_dir=$(RUN_DIR) eval_episodes=0
	$(PY) -m rlmem.evaluate checkpoint=$(RUN_DIR) episodes=200

test: setup
	$(PY) -m pytest

test-slow: setup
	$(PY) -m pytest -m slow

lint: setup
	$(VENV)/bin/ruff check rlmem envs tests experiments examples
	$(VENV)/bin/mypy

bench: setup
	$(PY) experiments/bench_ppo_throughput.py

clean:
	rm -rf $(VENV) runs outputs multirun .pytest_cache
