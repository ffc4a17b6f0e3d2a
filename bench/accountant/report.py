"""Combine `pft bench accountant --json` and peers.py output into the table
BENCHMARKS.md records: times and epsilons on the same cases, from one run."""

import json
import statistics
import sys


def stats(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.median(values), max(values)


def fmt(ms):
    return "-" if ms is None else (f"{ms:.3f}" if ms < 10 else f"{ms:.1f}")


def main():
    ours = json.load(open(sys.argv[1]))
    peers = json.load(open(sys.argv[2]))
    key = lambda c: (c["sample_rate"], c["noise_multiplier"], c["steps"], c["delta"], c["set"])
    by_case = {key(c): c for c in ours["cases"]}

    def rows(subset):
        for p in peers["cases"]:
            s = "grid10k" if p["set"] == "grid" and p["steps"] == 10000 else p["set"]
            if s == subset:
                yield by_case[key(p)], p

    print("| cases | measure | pft PLD | pft RDP | dp-accounting PLD 1e-4 | Opacus RDP | Opacus PRV | dp-accounting PLD / pft PLD |")
    print("|---|---|---|---|---|---|---|---|")
    for subset, label in (("headline", "q=0.01, sigma=1, 10,000 steps, delta=1e-5"),
                          ("grid10k", "60 cases with 10,000 steps")):
        pairs = list(rows(subset))
        if not pairs:
            continue
        ours_pld = stats([o["pld"]["ms"] for o, _ in pairs])
        ours_rdp = stats([o["rdp"]["ms"] for o, _ in pairs])
        dpa = stats([p["dp_accounting_pld"]["ms"] for _, p in pairs])
        orp = stats([p["opacus_rdp"]["ms"] for _, p in pairs])
        prv = stats([p["opacus_prv"]["ms"] for _, p in pairs])
        for i, what in ((0, "median ms"), (1, "max ms")):
            ratio = dpa[i] / ours_pld[i] if dpa[i] and ours_pld[i] else None
            print(f"| {label} | {what} | {fmt(ours_pld[i])} | {fmt(ours_rdp[i])} | {fmt(dpa[i])} | "
                  f"{fmt(orp[i])} | {fmt(prv[i])} | {'-' if ratio is None else f'{ratio:.0f}x'} |")
        diffs = [o["pld"]["epsilon"] / p["dp_accounting_pld"]["eps"] - 1 for o, p in pairs
                 if p["dp_accounting_pld"]["eps"]]
        if diffs:
            print(f"| {label} | pft PLD epsilon vs dp-accounting | median {100*statistics.median(diffs):+.3f}% | "
                  f"| max {100*max(diffs):+.3f}%, min {100*min(diffs):+.3f}% | | | |")
    cal_ours = stats([c["ms"] for c in ours["calibrations"]])
    cal = {k: stats([c[k]["ms"] for c in peers["calibrations"]])
           for k in ("dp_accounting_pld", "opacus_rdp", "opacus_prv")}
    for i, what in ((0, "median ms"), (1, "max ms")):
        d = cal["dp_accounting_pld"][i]
        ratio = d / cal_ours[i] if d and cal_ours[i] else None
        print(f"| noise calibration, 8 targets | {what} | {fmt(cal_ours[i])} | | {fmt(d)} | "
              f"{fmt(cal['opacus_rdp'][i])} | {fmt(cal['opacus_prv'][i])} | {'-' if ratio is None else f'{ratio:.0f}x'} |")
    s = ours["summary"]
    print()
    print(f"pft alone: grid of 300 cases PLD median {s['grid_pld_median_ms']:.3f} ms, max {s['grid_pld_max_ms']:.3f} ms; "
          f"96 extreme cases PLD max {s['extreme_pld_max_ms']:.1f} ms; slowest single call {s['pld_worst_call_ms']:.1f} ms.")


if __name__ == "__main__":
    main()
