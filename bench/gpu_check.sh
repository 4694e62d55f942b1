#!/usr/bin/env bash
# GPU readiness in one run (under 10 minutes on one recent GPU): is every GPU path of irflow used
# and correct where a GPU exists? The CPU test suite cannot tell, so this script runs on a GPU node:
#
#   1. the README's demo (results/demo/ndcg.tsv) under Snakemake with --resources gpu=1, in a
#      scratch directory, and checks that the model steps ran on CUDA (their logs say so);
#   2. the GPU tests: pytest -m gpu (tests/test_gpu.py: encode cuda vs cpu, fp16 training with the
#      GradScaler, faiss on the GPU vs the CPU); here a skip is a failure;
#   3. the scale benchmark's 1M-passage encode and exact search with all-MiniLM-L6-v2
#      (bench/bench_scale.py --sizes 1m --systems dense), printing passages/s and queries/s.
#
# Usage: bench/gpu_check.sh                 # the python on PATH if its torch sees CUDA, else a venv
#        PYTHON=/path/to/python bench/gpu_check.sh
#        SKIP_DEMO=1 SKIP_SCALE=1 bench/gpu_check.sh   # parts only
# Environment: VENV (default .venv-gpu), TORCH (torch==2.13.0), TORCH_INDEX (the CUDA wheel index,
# default cu126), CORES (snakemake --cores, default: all), WORK (scratch, default a temp dir).
# The venv is made only when no python with CUDA torch is given or found: like `make install`,
# torch's CUDA wheel first, then irflow with the `gpu` extra (faiss-gpu-cu12 instead of faiss-cpu).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
T0=$SECONDS
CORES=${CORES:-$(nproc)}
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/irflow-gpu-check.XXXXXX")}
mkdir -p "$WORK"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export IRFLOW_GPU_LOCK_DIR="$WORK/gpu-locks"

say() { printf '\n== [%4ds] %s\n' "$((SECONDS - T0))" "$*"; }
cuda_ok() { "$1" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; }

# ------------------------------------------------------------------------------- environment
PY=${PYTHON:-}
if [ -z "$PY" ]; then
    if command -v python3 >/dev/null && cuda_ok python3; then
        PY=$(command -v python3)
    else
        VENV=${VENV:-.venv-gpu}
        if [ ! -x "$VENV/bin/python" ] || ! cuda_ok "$VENV/bin/python"; then
            say "making $VENV: ${TORCH:-torch==2.13.0} (CUDA wheel) then irflow[gpu,test]"
            python3 -m venv "$VENV"
            "$VENV/bin/python" -m pip install -q --upgrade pip
            "$VENV/bin/python" -m pip install -q "${TORCH:-torch==2.13.0}" \
                --index-url "${TORCH_INDEX:-https://download.pytorch.org/whl/cu126}"
            "$VENV/bin/python" -m pip install -q -e ".[gpu,test]"
        fi
        PY=$VENV/bin/python
    fi
fi
cuda_ok "$PY" || { echo "gpu_check: $PY has no CUDA device (torch.cuda.is_available() is false)" >&2; exit 1; }
export PATH="$(dirname "$PY"):$PATH"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
"$PY" - <<'EOF'
import torch
from irflow.index import faisslib
faiss = faisslib.load()
print(f"torch {torch.__version__} CUDA {torch.version.cuda}: {torch.cuda.get_device_name(0)} "
      f"({torch.cuda.device_count()} device(s)); faiss {faiss.__version__}, GPUs for faiss: {faisslib.num_gpus(faiss)}")
if faisslib.num_gpus(faiss) == 0:
    print("WARNING: faiss has no GPU (faiss-cpu installed?): install irflow[gpu] instead of irflow[cpu]; "
          "searches run on the CPU and the faiss GPU test fails")
EOF
NGPU=$("$PY" -c 'import torch; print(torch.cuda.device_count())')
status=0

# ------------------------------------------------------------------------------------ 1. demo
if [ "${SKIP_DEMO:-0}" != 1 ]; then
    say "1. demo on CUDA: snakemake --cores $CORES --resources gpu=$NGPU results/demo/ndcg.tsv (in $WORK/demo)"
    mkdir -p "$WORK/demo/config"
    cp config/config.yaml "$WORK/demo/config/config.yaml"
    if "$PY" -m snakemake -s "$ROOT/Snakefile" -d "$WORK/demo" --cores "$CORES" --resources "gpu=$NGPU" \
            --quiet rules results/demo/ndcg.tsv; then
        cat "$WORK/demo/results/demo/ndcg.tsv"
        # every model step logs its device (irflow.devices); none may have fallen back to the CPU
        on_cpu=$(grep -l "running on the CPU" "$WORK"/demo/logs/{encode,train,score,rerank,cluster}/*.log \
                 2>/dev/null || true)
        on_gpu=$(grep -lE "leased GPU|scheduler's assignment" \
                 "$WORK"/demo/logs/{encode,train,score,rerank,cluster}/*.log 2>/dev/null | wc -l)
        echo "model-step jobs that leased a GPU: $on_gpu"
        if [ -n "$on_cpu" ]; then
            echo "gpu_check: these model steps ran on the CPU:"; echo "$on_cpu"; status=1
        fi
    else
        echo "gpu_check: the demo failed; last logs:" >&2
        ls -t "$WORK"/demo/logs/*/*.log 2>/dev/null | head -3 | xargs -r tail -n 20 >&2
        status=1
    fi
fi

# ------------------------------------------------------------------------------- 2. GPU tests
say "2. GPU tests: pytest -m gpu"
# a GPU test that skips here (no CUDA seen, no faiss GPU) is a failure: this is the machine they are for
if ! "$PY" -m pytest -q -p no:cacheprovider -m gpu -rs tests 2>&1 | tee "$WORK/pytest-gpu.txt"; then
    status=1
fi
if grep -q "GPU-only (or, as non-root, SLURM) tests skipped" "$WORK/pytest-gpu.txt"; then
    echo "gpu_check: GPU tests were skipped on a GPU machine"; status=1
fi

# --------------------------------------------------------------------- 3. 1M encode and search
if [ "${SKIP_SCALE:-0}" != 1 ]; then
    say "3. scale: 1M passages, all-MiniLM-L6-v2, encode ($NGPU shard job(s) at once) and exact search"
    # shards: one per GPU at a time; the search covers all 10,000 queries of scale-1m
    if ! "$PY" bench/bench_scale.py --sizes 1m --systems dense --model all-MiniLM-L6-v2 \
            --shards "$((NGPU > 4 ? NGPU : 4))" --queries 1000 --doc-max-length 128 --cores "$CORES" \
            --work "$WORK/scale" --snakemake-arg=--resources --snakemake-arg="gpu=$NGPU"; then
        status=1
    fi
fi

say "done (exit status $status); scratch: $WORK"
exit "$status"
