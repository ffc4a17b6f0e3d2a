#!/usr/bin/env bash
# Accuracy and speed of `pft guard scan` on the labelled development corpus
# (../shared/vectors/pii/dev.jsonl beside the checkout; override with
# PII_GOLD), scored with the peers' scoring library
# (../shared/anchors/presidio/eval_lib.py; override with PII_ANCHOR).
# Both tiers: the pattern recognizers alone (--patterns-only) and with the
# entity model (installed on first use). Speed: the pattern tier on the
# corpus repeated 30 times, the model tier on the corpus once; one thread
# and two.
set -euo pipefail
cd "$(dirname "$0")/../.."

gold="${PII_GOLD:-../shared/vectors/pii/dev.jsonl}"
anchor="${PII_ANCHOR:-../shared/anchors/presidio}"
out="${PFT_BENCH_OUT:-target/bench-guard}"
mkdir -p "$out"
cargo build --release -q -p pft-cli
pft=target/release/pft

"$pft" guard fetch-model >/dev/null
for tier in patterns model; do
    flag=""; [ "$tier" = patterns ] && flag="--patterns-only"
    echo "== $tier tier: accuracy on $gold"
    "$pft" guard scan $flag --input "$gold" --output "$out/dev-$tier.jsonl"
    python3 bench/guard/score.py "$gold" "$out/dev-$tier.jsonl" "$anchor"
done

for _ in $(seq 30); do cat "$gold"; done > "$out/dev-x30.jsonl"
count() { python3 -c "import json,sys; print(sum(len(json.loads(l)['text']) for l in open(sys.argv[1])))" "$1"; }
# The machine's speed varies from run to run (a shared virtual machine):
# each measurement runs three times, and the fastest and the median are
# printed.
for tier in patterns model; do
    if [ "$tier" = patterns ]; then flag="--patterns-only"; corpus="$out/dev-x30.jsonl"; else flag=""; corpus="$gold"; fi
    chars=$(count "$corpus")
    for threads in 1 2; do
        times=""
        for _ in 1 2 3; do
            start=$(date +%s.%N)
            RAYON_NUM_THREADS=$threads "$pft" guard scan $flag --input "$corpus" --output "$out/speed.jsonl"
            end=$(date +%s.%N)
            times="$times $(python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$start" "$end")"
        done
        python3 -c "import sys; c,t,n=int(sys.argv[1]),sys.argv[2],sys.argv[3]; s=sorted(map(float,sys.argv[4:])); print(f'{n} tier, {t} thread(s): {c} chars, fastest {s[0]:.2f} s = {c/s[0]/1e3:.0f} k chars/s, median {s[1]:.2f} s = {c/s[1]/1e3:.0f} k chars/s (JSONL read, model load, scan, JSONL write)')" "$chars" "$threads" "$tier" $times
    done
done

# False spans on PII-free prose: the Python language reference's prose
# paragraphs (shipped with CPython), with the entity model.
python3 bench/guard/prose.py "$out/prose.jsonl"
"$pft" guard scan --input "$out/prose.jsonl" --output "$out/prose-spans.jsonl"
python3 - "$out/prose.jsonl" "$out/prose-spans.jsonl" <<'PY'
import collections, json, sys
texts = [json.loads(l)["text"] for l in open(sys.argv[1], encoding="utf-8")]
spans = [json.loads(l)["spans"] for l in open(sys.argv[2], encoding="utf-8")]
chars = sum(map(len, texts))
found = collections.Counter()
for t, ss in zip(texts, spans):
    for s in ss:
        found[(s["label"], t[s["start"]:s["end"]])] += 1
n = sum(found.values())
print(f"prose: {n} spans in {chars} chars = {n / chars * 1e4:.2f} per 10,000 chars; every span, for review:")
for (label, text), k in sorted(found.items()):
    print(f"  {k} x {label} {text!r}")
PY
