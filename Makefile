# The two commands a newcomer needs: `make demo` and `make test`. Both install from scratch into
# $(VENV) first (torch's CPU wheel before everything else, so no multi-GB CUDA build is pulled).
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
TORCH ?= torch==2.13.0
# faiss build: cpu (faiss-cpu) or gpu (faiss-gpu-cu12, CUDA 12); never both
FAISS ?= cpu
export PATH := $(BIN):$(PATH)

.PHONY: install browser demo test lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[$(FAISS),test]"
	touch $@

demo: install
	$(BIN)/snakemake --cores 2 results/demo/ndcg.tsv
	@echo; echo "results/demo/ndcg.tsv:"; cat results/demo/ndcg.tsv

# Any skip but a GPU-only test's fails the run (tests/conftest.py), and so does pytest's "no tests
# ran" (exit status 5). Tests run in parallel, one worker per core up to 4 (pytest-xdist): most of
# their time is single-threaded process start-up (importing torch and transformers), and the long
# workflow tests are collected first so that they start first. `slow` tests (the vaswani reference)
# run with IRFLOW_SLOW=1.
# Debian's Chromium renders the report in tests/test_report.py (root installs it; others need it on PATH)
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1; } || \
	  echo "chromium is not installed: tests/test_report.py will fail (apt-get install chromium)"

test: install browser
	$(BIN)/snakemake --lint
	$(BIN)/python -m pytest -q -ra -n auto --maxprocesses 4 --dist load --maxschedchunk 1

clean:
	rm -rf results logs benchmarks .snakemake
