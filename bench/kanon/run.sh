#!/usr/bin/env bash
# `pft guard kanon` against anonypy 0.2.1 (Mondrian in pandas) on the same
# synthetic person records (age, zip, birth date, sex, job; a diagnosis
# passes through), k = 5 and 20. Both outputs are checked k-anonymous;
# times are for one process on one core. Python peer in PFT_BENCH_VENV
# (default ~/.cache/pftbench), installed on first use.
set -euo pipefail
cd "$(dirname "$0")/../.."

venv="${PFT_BENCH_VENV:-$HOME/.cache/pftbench}"
out="${PFT_BENCH_OUT:-target/bench-kanon}"
mkdir -p "$out"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import anonypy, pandas" 2>/dev/null \
    || "$venv/bin/pip" install -q "anonypy==0.2.1" "pandas>=2"
cargo build --release -q -p pft-cli
pft=target/release/pft
py="$venv/bin/python"

echo "| records | k | pft s | pft classes | pft NCP | anonypy s | anonypy classes | anonypy / pft |"
echo "|---|---|---|---|---|---|---|---|"
for n in 10000 100000; do
    "$py" bench/kanon/peer.py make "$n" "$out/people-$n.jsonl"
    for k in 5 20; do
        start=$(date +%s.%N)
        taskset -c 0 "$pft" guard kanon --k "$k" --quasi age,zip,dob,sex,job \
            --input "$out/people-$n.jsonl" --output "$out/kanon.jsonl" \
            --report "$out/report.json" 2>/dev/null
        end=$(date +%s.%N)
        "$py" bench/kanon/peer.py check "$out/kanon.jsonl" "$k" >/dev/null
        read -r peer_s peer_classes < <(taskset -c 0 "$py" bench/kanon/peer.py anonypy "$out/people-$n.jsonl" "$k")
        "$py" - "$n" "$k" "$start" "$end" "$peer_s" "$peer_classes" "$out/report.json" <<'PY'
import json, sys
n, k, start, end, peer_s, peer_classes, report = sys.argv[1:]
r = json.load(open(report))
s = float(end) - float(start)
print(f"| {int(n):,} | {k} | {s:.3f} | {r['classes']:,} | {r['ncp']:.3f} | {float(peer_s):.3f} | {int(peer_classes):,} | {float(peer_s) / s:.0f}x |")
PY
    done
done
