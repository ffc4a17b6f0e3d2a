"""Loads each adapter pft trained with Python peft onto transformers'
LlamaForCausalLM and compares the logits with pft's on the same input.

Fails (exit 1) unless, for every case, the largest difference is below
1e-4 and the adapter really changes the logits."""

import json
import sys

import torch
from peft import PeftModel
from transformers import LlamaForCausalLM

TOLERANCE = 1e-4


def main():
    cases = json.load(open(sys.argv[1]))
    failed = False
    for case in cases:
        base = LlamaForCausalLM.from_pretrained(case["model"], dtype=torch.float32)
        base.eval()
        ids = torch.tensor([case["ids"]])
        with torch.no_grad():
            base_logits = base(ids).logits
        model = PeftModel.from_pretrained(base, case["adapter"])
        model.eval()
        with torch.no_grad():
            logits = model(ids).logits
        ours = torch.tensor(case["logits"]).reshape(case["shape"])
        ours_base = torch.tensor(case["base_logits"]).reshape(case["shape"])
        diff = (logits - ours).abs().max().item()
        base_diff = (base_logits - ours_base).abs().max().item()
        effect = (logits - base_logits).abs().max().item()
        ok = diff < TOLERANCE and base_diff < TOLERANCE and effect > 100 * TOLERANCE
        failed |= not ok
        print(f"{case['name']}: max |peft - pft| = {diff:.2e} with the adapter, "
              f"{base_diff:.2e} without; the adapter moves logits by up to {effect:.3f}: "
              f"{'ok' if ok else 'FAIL'}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
