#!/usr/bin/env bash
# Interop check: adapters trained by pft, loaded with Python `peft` onto
# transformers' LlamaForCausalLM, give pft's logits to 1e-4.
#
# Installs torch, transformers and peft into a virtualenv outside the
# project (default ~/.cache/pft-bench/peft; override with PFT_PEFT_VENV).
# PyTorch is a multi-gigabyte download, which is why CI does not run this;
# run it after changing the model, LoRA or adapter-saving code.
set -euo pipefail
cd "$(dirname "$0")/../.."

venv="${PFT_PEFT_VENV:-$HOME/.cache/pft-bench/peft}"
out="${PFT_PEFT_OUT:-target/peft-interop}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -c "import torch, transformers, peft, safetensors" 2>/dev/null \
    || "$venv/bin/pip" install -q torch transformers peft safetensors
rm -rf "$out"
cargo run --release -q -p pft-train --example peft_interop -- "$out" > /dev/null
"$venv/bin/python" tests/peft_interop/compare.py "$out/ours.json"
