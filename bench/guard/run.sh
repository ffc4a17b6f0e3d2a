#!/usr/bin/env bash
# Accuracy and speed of `pft guard scan` on the labelled development corpus
# (../shared/vectors/pii/dev.jsonl beside the checkout; override with
# PII_GOLD), scored with the peers' scoring library
# (../shared/anchors/presidio/eval_lib.py; override with PII_ANCHOR).
# Speed: the corpus repeated 30 times, scanned on one thread and on two.
set -euo pipefail
cd "$(dirname "$0")/../.."

gold="${PII_GOLD:-../shared/vectors/pii/dev.jsonl}"
anchor="${PII_ANCHOR:-../shared/anchors/presidio}"
out="${PFT_BENCH_OUT:-target/bench-guard}"
mkdir -p "$out"
cargo build --release -q -p pft-cli
pft=target/release/pft

"$pft" guard scan --input "$gold" --output "$out/dev-spans.jsonl"
python3 bench/guard/score.py "$gold" "$out/dev-spans.jsonl" "$anchor"

for _ in $(seq 30); do cat "$gold"; done > "$out/dev-x30.jsonl"
chars=$(python3 -c "import json,sys; print(sum(len(json.loads(l)['text']) for l in open(sys.argv[1])))" "$out/dev-x30.jsonl")
for threads in 1 2; do
    start=$(date +%s.%N)
    RAYON_NUM_THREADS=$threads "$pft" guard scan --input "$out/dev-x30.jsonl" --output "$out/x30-spans.jsonl"
    end=$(date +%s.%N)
    python3 -c "import sys; c,s,e,t=int(sys.argv[1]),float(sys.argv[2]),float(sys.argv[3]),sys.argv[4]; print(f'{t} thread(s): {c} chars in {e-s:.2f} s = {c/(e-s)/1e6:.2f} M chars/s (JSONL read, scan, JSONL write)')" "$chars" "$start" "$end" "$threads"
done
