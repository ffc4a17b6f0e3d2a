#!/usr/bin/env bash
# Times pft's accountants and the peers users compare them with
# (dp-accounting's PLD at 1e-4, Opacus's RDP and PRV) on the same cases, in
# one run, and prints the table BENCHMARKS.md records.
#
# The peers go into a virtualenv outside the project
# (default ~/.cache/pft-bench/accountant; override with PFT_BENCH_VENV).
# Run it on a quiet machine: the figures are wall times.
set -euo pipefail
cd "$(dirname "$0")/../.."

venv="${PFT_BENCH_VENV:-$HOME/.cache/pft-bench/accountant}"
out="${PFT_BENCH_OUT:-target/bench-accountant}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q numpy scipy dp-accounting==0.6.0
# Opacus's accountants need only NumPy and SciPy; skip PyTorch.
"$venv/bin/pip" install -q --no-deps opacus==1.6.0

cargo build --release -q -p pft-cli
mkdir -p "$out"
target/release/pft bench accountant --print-cases > "$out/cases.json"
target/release/pft bench accountant --json > "$out/pft.json"
"$venv/bin/python" bench/accountant/peers.py "$out/cases.json" > "$out/peers.json"
"$venv/bin/python" bench/accountant/report.py "$out/pft.json" "$out/peers.json"
