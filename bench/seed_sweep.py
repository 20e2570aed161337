"""Compare settings over several seeds, each setting's seeds trained together in one compile.

    python bench/seed_sweep.py --run "HIDDEN_SIZES=(128,128)" --run "HIDDEN_SIZES=(256,256)"
    python bench/seed_sweep.py --seeds 4 --run "USE_MUON=True TOTAL_TIMESTEPS=2000000"

Each `--run` is space-separated KEY=VALUE overrides of `default_config()` (values parsed as Python
literals). Seed i of a setting uses key i of `jax.random.split(PRNGKey(SEED), seeds)`, so every
setting sees the same seeds: compare them seed by seed. Prints one markdown row per setting: final
score per seed (episode-weighted mean over the last 10% of updates) and s/update/seed, which is
the vmapped run's time over seeds; run nothing else on the machine while timing.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from compare_optimizers import run_seeds  # noqa: E402
from learning_curve import parse_sets  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--run", action="append", required=True, help='"KEY=VALUE KEY=VALUE"')
    args = parser.parse_args()
    print(f"command: python {shlex.join(sys.argv)}\n")
    print("| setting | final score per seed | mean | s/update/seed | compile s |")
    print("|---|---|---|---|---|")
    for run in args.run:
        result = run_seeds(parse_sets(shlex.split(run)), args.seeds)
        finals = ", ".join(f"{f:.1f}" for f in result["final"])
        seconds = result["s_per_update_per_seed"]
        print(f"| {run} | {finals} | {np.mean(result['final']):.1f} | {seconds:.3f} | "
              f"{result['compile_s']:.1f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
