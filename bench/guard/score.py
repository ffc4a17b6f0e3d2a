"""Scores `pft guard scan` output against a gold corpus with the peers'
scoring library (eval_lib.py beside the Presidio anchor), and prints the
per-label table and the character-level figures.

usage: python3 score.py GOLD.jsonl PREDICTIONS.jsonl ANCHOR_DIR [--json]
"""
import json
import sys


def main():
    gold_path, pred_path, anchor_dir = sys.argv[1:4]
    sys.path.insert(0, anchor_dir)
    import eval_lib

    gold = eval_lib.load_gold(gold_path)
    preds = [json.loads(l)["spans"] for l in open(pred_path, encoding="utf-8")]
    if len(preds) != len(gold):
        sys.exit(f"{len(preds)} prediction lines for {len(gold)} gold records")
    res = eval_lib.evaluate(gold, preds)
    if "--json" in sys.argv:
        print(json.dumps(res))
    else:
        print(eval_lib.table(res))


if __name__ == "__main__":
    main()
