#!/usr/bin/env bash
# The GPU check of BACKEND=openai: serve a Qwen2.5-0.5B-class model with vLLM on this machine's
# NVIDIA GPU, run benchmarks.speed.latency and benchmarks.load.load through BACKEND=openai, print their figures.
#
# Needs an NVIDIA GPU, vLLM installed (its own virtualenv is best: `pip install vllm`), the bot
# installed (`make install`) and network access once, for the model's download. It has not run
# on the development machine, which has no GPU (docs/deployment.md).
#
#   scripts/vllm-gpu-check.sh
#   VLLM=/opt/vllm-env/bin/vllm VLLM_MODEL=Qwen/Qwen2.5-0.5B-Instruct scripts/vllm-gpu-check.sh
#
# Settings (environment): VLLM (the vllm command), VLLM_MODEL (default: the full-precision
# original of the packaged GGUF), VLLM_PORT, BOT_PYTHON (the bot's python), OUT (results folder),
# MESSAGES (benchmarks.speed.latency's messages, default 20), USERS (benchmarks.load.load's concurrent users,
# default 8; a GPU has room for many more: try 32).
set -euo pipefail
cd "$(dirname "$0")/.."

VLLM=${VLLM:-vllm}
VLLM_MODEL=${VLLM_MODEL:-Qwen/Qwen2.5-Coder-0.5B-Instruct}
VLLM_PORT=${VLLM_PORT:-8000}
BOT_PYTHON=${BOT_PYTHON:-.venv/bin/python}
OUT=${OUT:-benchmarks/results/vllm}
MESSAGES=${MESSAGES:-20}
USERS=${USERS:-8}

if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L; then
    echo "no NVIDIA GPU here (nvidia-smi): this check needs one" >&2
    exit 2
fi
if ! command -v "$VLLM" >/dev/null; then
    echo "vllm is not installed (set VLLM=/path/to/vllm, or: pip install vllm)" >&2
    exit 2
fi
mkdir -p "$OUT"

# Prefix caching keeps the analyst prompt's head and the reply openings in the KV cache;
# priority scheduling lets labels (priority -1) go before replies (OPENAI_PRIORITY=true).
echo "starting vllm serve $VLLM_MODEL on 127.0.0.1:$VLLM_PORT (log: $OUT/vllm.log)…"
"$VLLM" serve "$VLLM_MODEL" --host 127.0.0.1 --port "$VLLM_PORT" \
    --enable-prefix-caching --scheduling-policy priority >"$OUT/vllm.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true' EXIT

for _ in $(seq 1 900); do  # the first start downloads the model and captures CUDA graphs
    if curl -sf "http://127.0.0.1:$VLLM_PORT/v1/models" >/dev/null; then break; fi
    if ! kill -0 "$server" 2>/dev/null; then
        tail -n 40 "$OUT/vllm.log" >&2
        echo "vllm serve exited (log above)" >&2
        exit 1
    fi
    sleep 1
done
curl -sf "http://127.0.0.1:$VLLM_PORT/v1/models" >/dev/null || { echo "vllm did not start" >&2; exit 1; }

# The bot's prompts are token ids from MODEL's tokenizer (the packaged GGUF: Qwen2.5's); the
# start-up compares it with the server's /tokenize and stops if they differ.
export BACKEND=openai
export OPENAI_BASE_URL="http://127.0.0.1:$VLLM_PORT/v1"
export OPENAI_MODEL="$VLLM_MODEL"
export OPENAI_PRIORITY=true
export MODEL=${MODEL:-packaged}

echo "== benchmarks.speed.latency (BACKEND=openai on vLLM; the reference runs on this CPU) =="
"$BOT_PYTHON" -m benchmarks.speed.latency --messages "$MESSAGES" --json "$OUT/latency.json"
echo "== benchmarks.load.load --users $USERS --messages 3 --compare-sequential =="
"$BOT_PYTHON" -m benchmarks.load.load --users "$USERS" --messages 3 --compare-sequential \
    --json "$OUT/load.json"
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv
echo "figures and transcripts: $OUT/latency.json, $OUT/load.json; server log: $OUT/vllm.log"
