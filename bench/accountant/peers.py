"""Time the peers on pft's benchmark cases: dp-accounting's PLD (value
discretization 1e-4) and RDP, Opacus's RDP and PRV.

Usage: python peers.py CASES.json [--sets headline,grid10k] > peers.json

CASES.json comes from `pft bench accountant --print-cases`. Each call is
timed the way a user calls the library: construct the accountant, compose,
ask for epsilon. Opacus is imported without PyTorch (its accountants are
pure NumPy/SciPy; only the training engine needs torch): a stub stands in for
the optimizer module the accountant base class imports for type hints.
"""

import argparse
import importlib.util
import json
import math
import os
import resource
import signal
import statistics
import sys
import time
import types


def import_opacus_accountants():
    spec = importlib.util.find_spec("opacus")
    if spec is None:
        raise SystemExit("opacus is not installed")
    root = os.path.dirname(spec.origin)
    package = types.ModuleType("opacus")
    package.__path__ = [root]
    sys.modules["opacus"] = package
    optimizers = types.ModuleType("opacus.optimizers")

    class DPOptimizer:  # only referenced in type hints and hooks
        pass

    optimizers.DPOptimizer = DPOptimizer
    sys.modules["opacus.optimizers"] = optimizers
    from opacus.accountants import PRVAccountant, RDPAccountant
    from opacus.accountants.utils import get_noise_multiplier

    return RDPAccountant, PRVAccountant, get_noise_multiplier


class Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise Timeout()


def timed(fn, repeats, limit_s):
    """Median and worst seconds of `repeats` calls; None where a call
    failed or exceeded `limit_s`."""
    signal.signal(signal.SIGALRM, _alarm)
    times, value = [], None
    for _ in range(repeats):
        signal.setitimer(signal.ITIMER_REAL, limit_s)
        start = time.perf_counter()
        try:
            value = fn()
        except Timeout:
            return {"eps": None, "ms": None, "worst_ms": None, "error": f"over {limit_s} s"}
        except Exception as e:  # a peer's own failure is a result
            return {"eps": None, "ms": None, "worst_ms": None, "error": repr(e)[:200]}
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        times.append(time.perf_counter() - start)
    return {
        "eps": value,
        "ms": statistics.median(times) * 1e3,
        "worst_ms": max(times) * 1e3,
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("cases")
    parser.add_argument("--sets", default="headline,grid10k")
    parser.add_argument("--limit", type=float, default=60.0, help="seconds per call")
    parser.add_argument("--memory-gib", type=float, default=8.0,
                        help="address-space cap: a peer that needs more fails instead of exhausting the machine")
    args = parser.parse_args()
    wanted = set(args.sets.split(","))
    cap = int(args.memory_gib * (1 << 30))
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    import dp_accounting
    from dp_accounting.pld import pld_privacy_accountant
    from dp_accounting.rdp import rdp_privacy_accountant

    RDPAccountant, PRVAccountant, get_noise_multiplier = import_opacus_accountants()

    def event(q, sigma, steps):
        return dp_accounting.SelfComposedDpEvent(
            dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps
        )

    def dpa_pld(q, sigma, steps, delta):
        acc = pld_privacy_accountant.PLDAccountant(value_discretization_interval=1e-4)
        acc.compose(event(q, sigma, steps))
        return acc.get_epsilon(delta)

    def opacus_rdp(q, sigma, steps, delta):
        acc = RDPAccountant()
        acc.history = [(sigma, q, steps)]
        return acc.get_epsilon(delta)

    def opacus_prv(q, sigma, steps, delta):
        acc = PRVAccountant()
        acc.history = [(sigma, q, steps)]
        return acc.get_epsilon(delta)

    data = json.load(open(args.cases))
    results = []
    for case in data["cases"]:
        subset = case["set"]
        if subset == "grid" and case["steps"] == 10000:
            subset = "grid10k"
        if subset not in wanted:
            continue
        q, sigma, steps, delta = case["sample_rate"], case["noise_multiplier"], case["steps"], case["delta"]
        repeats = 5 if case["set"] == "headline" else 1
        row = dict(case)
        for name, fn in [("dp_accounting_pld", dpa_pld), ("opacus_rdp", opacus_rdp), ("opacus_prv", opacus_prv)]:
            row[name] = timed(lambda: fn(q, sigma, steps, delta), repeats, args.limit)
        results.append(row)
        print(f"{case['set']} q={q} sigma={sigma} steps={steps}: "
              + ", ".join(f"{k} {row[k]['ms']}" for k in ("dp_accounting_pld", "opacus_rdp", "opacus_prv")),
              file=sys.stderr)

    calibrations = []
    for c in data["calibrations"]:
        target, delta, q, steps = c["target_epsilon"], c["delta"], c["sample_rate"], c["steps"]

        def dpa_calibrate():
            return dp_accounting.calibrate_dp_mechanism(
                lambda: pld_privacy_accountant.PLDAccountant(value_discretization_interval=1e-4),
                lambda s: event(q, s, steps),
                target, delta,
                dp_accounting.ExplicitBracketInterval(0.3, 100.0),
                tol=1e-4,
            )

        row = dict(c)
        row["dp_accounting_pld"] = timed(dpa_calibrate, 1, args.limit)
        for accountant in ("rdp", "prv"):
            row[f"opacus_{accountant}"] = timed(
                lambda: get_noise_multiplier(
                    target_epsilon=target, target_delta=delta, sample_rate=q,
                    steps=steps, accountant=accountant),
                1, args.limit)
        calibrations.append(row)
        print(f"calibration target={target} q={q}: done", file=sys.stderr)

    json.dump({"cases": results, "calibrations": calibrations}, sys.stdout)


if __name__ == "__main__":
    main()
