# rtlforge — common tasks. `make setup` is idempotent.
PY ?= $(shell [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)

.PHONY: setup demo test test-fast lint format bench

setup:
	bash scripts/setup.sh

# The main job on the embedded default: tiny policy → SFT warm start → GRPO on CPU.
demo:
	$(PY) -m accelerate.commands.launch --num_processes 1 --num_cpu_threads_per_process $(shell nproc) train/grpo.py

test:
	$(PY) -m pytest -q

test-fast:
	$(PY) -m pytest -q -m "not slow"

lint:
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format:
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench:
	$(PY) scripts/bench_rewards.py
	$(PY) scripts/bench_server.py
