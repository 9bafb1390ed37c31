"""How reliably the demo's RL stage learns: the whole demo run several times, one after another.

Each run is `examples/demo.py` in its own process (its own server, the same seeds); reported per
run: the sampled accuracy over the RL stage's first and last 10 steps, the eval accuracy at its
first and last eval, and whether the run met the demo test's bar (last ≥ 2 × first and last −
first ≥ `--min-rise`). RL on a 2-layer model amplifies the trainer's run-to-run float differences,
so one run says little about the next: this is the measure of a demo configuration.

    python -m bench.demo_reliability [--runs 3] [--rl-steps 120] [--group-size 16] [--min-rise 0.3]
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from rl.metric_keys import ACCURACY, EVAL_ACCURACY

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo.py"


def summary(rl_dir: Path) -> dict[str, float]:
    rows = [json.loads(line) for line in (rl_dir / "metrics.jsonl").read_text().splitlines()]
    accuracy = [row[ACCURACY] for row in rows if ACCURACY in row]
    evals = [row[EVAL_ACCURACY] for row in rows if EVAL_ACCURACY in row]
    return {
        "first": float(np.mean(accuracy[:10])),
        "last": float(np.mean(accuracy[-10:])),
        "eval_first": evals[0],
        "eval_last": evals[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rl-steps", type=int, default=120)
    parser.add_argument("--group-size", type=int, default=16)
    parser.add_argument("--min-rise", type=float, default=0.3)
    parser.add_argument("--out", type=Path, help="where each run's logs go (default runs/demo-reliability-<time>)")
    args = parser.parse_args()
    out = args.out or Path("runs") / time.strftime("demo-reliability-%Y%m%d-%H%M%S")
    print(f"runs' logs (metrics, curves, output): {out}")
    passed = 0
    for run in range(args.runs):
        log_dir = out / f"run{run}"
        log_dir.mkdir(parents=True)
        started = time.monotonic()
        with open(log_dir / "output.txt", "w") as output:
            subprocess.run(
                [sys.executable, str(DEMO), "--log-dir", str(log_dir), "--rl-steps", str(args.rl_steps),
                 "--group-size", str(args.group_size)],
                check=True, stdout=output, stderr=subprocess.STDOUT,
            )
        figures = summary(log_dir / "rl")
        ok = figures["last"] >= 2 * figures["first"] and figures["last"] - figures["first"] >= args.min_rise
        passed += ok
        print(f"run {run}: accuracy {figures['first']:.2f} → {figures['last']:.2f}, eval {figures['eval_first']:.2f} → "
              f"{figures['eval_last']:.2f}, {time.monotonic() - started:.0f} s, {'met' if ok else 'MISSED'} the bar", flush=True)
    print(f"{passed}/{args.runs} runs met last ≥ 2 × first and +{args.min_rise} "
          f"(rl_steps {args.rl_steps}, group_size {args.group_size})")


if __name__ == "__main__":
    main()
