"""Combine `pft bench train --json` and the Opacus anchor's results.json
(bench/train/run.sh writes both) into the table BENCHMARKS.md records."""

import json
import os
import sys

MODELS = [("smollm2-135m", "SmolLM2-135M"), ("tiny", "tiny llama (4x256)")]


def main():
    out = sys.argv[1]
    print("| model | B x T | step | pft tok/s | Opacus tok/s | pft / Opacus | DP / plain, pft | DP / plain, Opacus | peak RSS MiB, pft | peak RSS MiB, Opacus |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for key, label in MODELS:
        ours_path = os.path.join(out, f"pft-{key}.json")
        theirs_path = os.path.join(out, f"opacus-{key}", "results.json")
        if not (os.path.exists(ours_path) and os.path.exists(theirs_path)):
            continue
        ours = json.load(open(ours_path))
        theirs = json.load(open(theirs_path))["configs"]
        shape = f"{ours['batch']} x {ours['seq']}"
        for m in ours["configs"]:
            peer_name = "dp_lora_hooks" if m["private"] else "plain_lora"
            peer = theirs.get(peer_name, {})
            peer_tps = peer.get("tokens_per_s")
            peer_ratio = peer.get("paired_round_time_ratio_vs_plain_lora", {}).get("median") if m["private"] else None
            kind = ("DP-SGD" if m["private"] else "plain") + f" LoRA, {m['precision']}"
            cells = [
                label, shape, kind,
                f"{m['tokens_per_second']:.0f}",
                f"{peer_tps:.0f}" if peer_tps else "-",
                f"{m['tokens_per_second'] / peer_tps:.2f}x" if peer_tps else "-",
                f"{m['time_vs_plain']:.3f}" if m.get("time_vs_plain") else "-",
                f"{peer_ratio:.3f}" if peer_ratio else "-",
                f"{m['peak_rss_mib']:.0f}" if m.get("peak_rss_mib") else "-",
                f"{peer['peak_rss_train_mib']:.0f}" if peer.get("peak_rss_train_mib") else "-",
            ]
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
