"""Training throughput: env-steps/s (steady state, compile apart) and achieved FLOP/s vs peak.

    python bench/bench_train.py                 # default config (Adam, Muon) + the anchor's net
    python bench/bench_train.py --case "USE_MUON=True MUON_NS_STEPS=2"   # and more cases

Cases are compiled first, then timed in interleaved rounds (--rounds x --updates each); the
figure is the median update, and "vs Adam" is each case's env-steps/s over the default Adam's.

FLOPs come from XLA's cost analysis of the pieces of one update analysed OUTSIDE any loop (a
scan body is counted once, not per trip): a policy forward on NUM_ENVS observations (x NUM_STEPS
per rollout), a loss forward+backward on one minibatch and one optimizer step (x minibatches x
epochs). The peak is a 2048x2048 fp32 matmul measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from learning_curve import parse_sets  # noqa: E402

import train_snake_purejaxrl_impl as impl  # noqa: E402

ANCHOR_NET = {  # the anchor's PureJaxRL-style agent: flat board, separate 2x256 tanh MLPs
    "VIEW": "board",
    "TORSO": "separate",
    "HIDDEN_SIZES": (256, 256),
    "ACTIVATION": "tanh",
    "NUM_ENVS": 256,
    "NUM_STEPS": 128,
    "UPDATE_EPOCHS": 4,
    "NUM_MINIBATCHES": 8,
}
CASES = {
    "default, Adam": {},
    "default, Muon": {"USE_MUON": True},
    "anchor's network, Adam": ANCHOR_NET,
}


def matmul_peak_flops(size: int = 2048, repeats: int = 10) -> float:
    """Best fp32 FLOP/s of one size x size matmul."""
    a = jax.random.normal(jax.random.PRNGKey(0), (size, size))
    matmul = jax.jit(jnp.matmul)
    matmul(a, a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, a).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def flops(fn, *args) -> float:
    return jax.jit(fn).lower(*args).compile().cost_analysis()["flops"]


def flops_per_update(parts: impl.Parts, runner: impl.RunnerState) -> float:
    """Rollout forwards + epochs x minibatches x (loss forward+backward + optimizer step)."""
    cfg = parts.config
    mask = impl.action_masks(parts, runner.env_state)
    forward = flops(parts.network.apply, runner.params, runner.obs, mask)
    size = cfg["MINIBATCH_SIZE"]
    tile = lambda x: jnp.resize(x, (size, *x.shape[1:]))  # noqa: E731
    batch = impl.Batch(
        obs=tile(runner.obs),
        mask=tile(mask),
        action=jnp.zeros(size, jnp.int32),
        log_prob=jnp.zeros(size),
        value=jnp.zeros(size),
        advantage=jnp.linspace(-1, 1, size),
        target=jnp.zeros(size),
    )
    grad = jax.grad(impl.ppo_loss, has_aux=True)
    # The batch is an argument, not a closure: a constant batch gets folded at compile time.
    backward = flops(lambda params, b: grad(params, parts, b), runner.params, batch)
    grads = jax.tree.map(jnp.ones_like, runner.params)
    optimizer = flops(parts.optimizer.update, grads, runner.opt_state, runner.params)
    steps = cfg["UPDATE_EPOCHS"] * cfg["NUM_MINIBATCHES"]
    # +1 forward: the bootstrap value of the last observation.
    return forward * (cfg["NUM_STEPS"] + 1) + steps * (backward + optimizer)


def compile_case(config: dict) -> dict:
    """Build, initialise and run the first (compiling) update of one case."""
    parts = impl.make_parts(config)
    init, step = impl.make_train_step(config)
    start = time.perf_counter()
    runner, metrics = step(init(jax.random.PRNGKey(0)))
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - start
    return {"parts": parts, "step": step, "runner": runner, "compile_s": compile_s, "seconds": []}


def time_updates(case: dict, updates: int) -> None:
    """Run `updates` more updates of `case`, appending each one's wall-clock seconds."""
    for _ in range(updates):
        start = time.perf_counter()
        case["runner"], metrics = case["step"](case["runner"])
        jax.block_until_ready(metrics)
        case["seconds"].append(time.perf_counter() - start)


def summarize(case: dict) -> dict:
    """Median s/update (robust to the other jobs of a shared machine) and what follows from it."""
    cfg, seconds = case["parts"].config, float(np.median(case["seconds"]))
    return {
        "env_steps_per_s": cfg["NUM_ENVS"] * cfg["NUM_STEPS"] / seconds,
        "flops_per_s": flops_per_update(case["parts"], case["runner"]) / seconds,
        "compile_s": case["compile_s"],
        "s_per_update": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=3, help="timed updates per case per round")
    parser.add_argument("--rounds", type=int, default=4, help="rounds over all cases")
    parser.add_argument("--case", action="append", default=[], help='more: "KEY=VALUE ..."')
    args = parser.parse_args()
    cases = {**CASES, **{extra: parse_sets(shlex.split(extra)) for extra in args.case}}
    peak = matmul_peak_flops()
    device = jax.devices()[0].platform
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__} on "
          f"{device}; fp32 2048x2048 matmul peak {peak / 1e9:.0f} GFLOP/s")  # fmt: skip
    print(f"command: python {shlex.join(sys.argv)}\n")
    compiled = {name: compile_case(overrides) for name, overrides in cases.items()}
    for _ in range(args.rounds):  # interleaved, so a burst of load hits every case alike
        for case in compiled.values():
            time_updates(case, args.updates)
    print("| case | env-steps/s | s/update | compile+1st update s | GFLOP/s | of peak | vs Adam |")
    print("|---|---|---|---|---|---|---|")
    results = {name: summarize(case) for name, case in compiled.items()}
    adam = results["default, Adam"]["env_steps_per_s"]
    for name, r in results.items():
        print(f"| {name} | {r['env_steps_per_s']:,.0f} | {r['s_per_update']:.3f} | "
              f"{r['compile_s']:.1f} | {r['flops_per_s'] / 1e9:.0f} | "
              f"{r['flops_per_s'] / peak:.0%} | {r['env_steps_per_s'] / adam:.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
