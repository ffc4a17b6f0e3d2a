"""Make synthetic person records, k-anonymize them with anonypy's Mondrian
(the Python peer), and check and time `pft guard kanon` on the same file.

usage: peer.py make N OUT.jsonl
       peer.py anonypy IN.jsonl K      -> seconds, classes
       peer.py check OUT.jsonl K       -> smallest class of the pft output
"""
import json
import random
import sys
import time
from collections import Counter

QUASI = ["age", "zip", "dob", "sex", "job"]


def make(n, path):
    rng = random.Random(2006)
    zips = [f"{z:05d}" for z in rng.sample(range(1000, 99999), 300)]
    jobs = ["nurse", "clerk", "teacher", "engineer", "driver", "chef",
            "lawyer", "farmer", "cashier", "pilot", "painter", "baker"]
    with open(path, "w") as f:
        for i in range(n):
            year = rng.randint(1935, 2006)
            rec = {
                "id": i,
                "age": 2026 - year - rng.randint(0, 1),
                "zip": rng.choice(zips),
                "dob": f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                "sex": rng.choice(["F", "M"]),
                "job": rng.choice(jobs),
                "diagnosis": rng.choice(["flu", "asthma", "diabetes", "none"]),
            }
            f.write(json.dumps(rec) + "\n")


def anonypy_run(path, k):
    import pandas as pd
    from anonypy import mondrian, anonypy as ap

    df = pd.read_json(path, lines=True, dtype={"zip": str})
    # anonypy spans numbers and categories only: dates become day counts,
    # postcodes numbers (it has no prefix generalization).
    df["dob"] = (pd.to_datetime(df["dob"]) - pd.Timestamp("1970-01-01")).dt.days
    df["zip"] = df["zip"].astype(int)
    for c in ["sex", "job", "diagnosis"]:
        df[c] = df[c].astype("category")
    start = time.perf_counter()
    m = mondrian.Mondrian(df, QUASI, "diagnosis")
    partitions = m.partition(k)
    rows = ap.anonymize(df, partitions, QUASI, "diagnosis")
    seconds = time.perf_counter() - start
    assert min(len(p) for p in partitions) >= k
    assert sum(r["count"] for r in rows) == len(df)
    print(f"{seconds:.3f} {len(partitions)}")


def check(path, k):
    counts = Counter()
    for line in open(path):
        r = json.loads(line)
        counts[tuple(json.dumps(r.get(c)) for c in QUASI)] += 1
    smallest = min(counts.values())
    assert smallest >= k, f"a combination occurs {smallest} < {k} times"
    print(smallest)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "make":
        make(int(sys.argv[2]), sys.argv[3])
    elif cmd == "anonypy":
        anonypy_run(sys.argv[2], int(sys.argv[3]))
    elif cmd == "check":
        check(sys.argv[2], int(sys.argv[3]))
