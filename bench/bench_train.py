"""Training throughput: env-steps/s (steady state, compile apart), FLOP/s, and the anchor's PPO
side by side in the same run.

    python -m bench.bench_train --anchor-python ~/anchor-venv/bin/python
    python -m bench.bench_train --case "MUON_NS_STEPS=2"   # more cases

Each case is the jitted chunk of updates the CLI runs (`impl.make_chunk`, --updates updates in
one `lax.scan`), compiled once, then timed in interleaved rounds; the anchor
(../shared/anchors/ppo_jumanji_snake.py: PureJaxRL-style PPO on Jumanji Snake, all updates in
one scan) runs the same number of updates in each round, in its own venv. Figures are the
median over rounds; "vs anchor" divides by the anchor's median from this same run.

FLOPs come from XLA's cost analysis of the pieces of one update analysed OUTSIDE any loop (a
scan body is counted once, not per trip): a policy forward on NUM_ENVS agent inputs (x
NUM_STEPS + 1 per rollout), a loss forward+backward on one minibatch and one optimizer step
(x minibatches x epochs). The peak is a 2048x2048 fp32 matmul measured in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import muon_jax
import train_snake_purejaxrl_impl as impl
from bench.common import machine_line, run_anchor

ANCHOR = "ppo_jumanji_snake.py"
ANCHOR_NET = {  # the anchor's PureJaxRL-style agent: flat board, separate 2x256 tanh MLPs
    "VIEW": "board",
    "TORSO": "separate",
    "HIDDEN_SIZES": (256, 256),
    "ACTIVATION": "tanh",
    "ANNEAL_LR": True,
    "FLOOD_FILL": False,
    "USE_MUON": False,
}
NO_STEP_FIGURES = "default, without the step figures"
CASES = {
    "default (Muon)": {},
    NO_STEP_FIGURES: {},  # compiled without update_ratio/rms, param_norm, explained_variance
    "Adam": {"USE_MUON": False},
    "default without the flood fill": {"FLOOD_FILL": False},
    "anchor's network, Adam": ANCHOR_NET,
}


@contextlib.contextmanager
def without_step_figures():
    """Trace the update as it was before it logged each optimizer group's step and weight norm
    and the value's explained variance: the side of the bench that prices them."""
    saved = muon_jax.step_statistics, impl.explained_variance
    muon_jax.step_statistics = lambda *args: {}
    impl.explained_variance = lambda value, target: jnp.zeros(())
    try:
        yield
    finally:
        muon_jax.step_statistics, impl.explained_variance = saved


def parse_sets(text: str) -> dict:
    """'KEY=VALUE KEY=VALUE' -> config overrides (values as Python literals when they parse)."""
    import ast

    config = {}
    for pair in shlex.split(text):
        key, _, value = pair.partition("=")
        try:
            config[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            config[key] = value
    return config


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
    """Rollout forwards (with the agent's input) + epochs x minibatches x (loss
    forward+backward + optimizer step), each analysed outside any loop."""
    cfg = parts.config
    single = jax.tree.map(lambda x: x[0], runner)
    act = lambda params, obs, state: impl.policy(parts, params, obs, state)[2]  # noqa: E731
    forward = flops(act, single.params, single.obs, single.env_state)
    hunger = jax.vmap(parts.env.hunger)(single.env_state)
    agent_input = impl.observe(cfg, single.obs, hunger=hunger)
    size = cfg["MINIBATCH_SIZE"]
    tile = lambda x: jnp.resize(x, (size, *x.shape[1:]))  # noqa: E731
    batch = impl.Batch(
        features=jax.tree.map(tile, agent_input.features),
        mask=jnp.ones((size, 4), bool),
        action=jnp.zeros(size, jnp.int32),
        log_prob=jnp.zeros(size),
        value=jnp.zeros(size),
        advantage=jnp.linspace(-1, 1, size),
        target=jnp.zeros(size),
    )
    grad = jax.grad(impl.ppo_loss, has_aux=True)
    # The batch is an argument, not a closure: a constant batch gets folded at compile time.
    ent_coef = impl.entropy_coefficient(cfg, single.update)
    backward = flops(lambda params, b: grad(params, parts, b, ent_coef), single.params, batch)
    optimizer = impl.optimizer_of(parts, single)
    grads = jax.tree.map(jnp.ones_like, single.params)
    step = flops(optimizer.update, grads, single.opt_state, single.params)
    steps = cfg["UPDATE_EPOCHS"] * cfg["NUM_MINIBATCHES"]
    # +1 forward: the bootstrap value of the last observation.
    return forward * (cfg["NUM_STEPS"] + 1) + steps * (backward + step)


def compile_case(config: dict, updates: int) -> dict:
    """Build a case, initialise it and run its first (compiling) chunk."""
    parts = impl.make_parts({"TOTAL_TIMESTEPS": 10**9, **config})
    chunk = jax.jit(impl.make_chunk(parts, updates))
    start = time.perf_counter()
    runner, metrics, _ = chunk(jax.jit(impl.init_runs(parts))(), updates)
    jax.block_until_ready(metrics)
    return {"parts": parts, "chunk": chunk, "runner": runner, "updates": updates,
            "compile_s": time.perf_counter() - start, "seconds": []}  # fmt: skip


def time_chunk(case: dict) -> None:
    """Run one more chunk of the case; record its seconds per update."""
    start = time.perf_counter()
    stop = int(case["runner"].update[0]) + case["updates"]
    case["runner"], metrics, _ = case["chunk"](case["runner"], stop)
    jax.block_until_ready(metrics)
    case["seconds"].append((time.perf_counter() - start) / case["updates"])


def measure_anchor(python: str, updates: int) -> float | None:
    """The anchor's env-steps/s (its run, compile excluded) over `updates` updates."""
    args = ["--grid", "12", "--total-steps", str(updates * 256 * 128), "--rows", "1"]
    return run_anchor(python, ANCHOR, args, r"env_steps_per_s=([\d,]+)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=3, help="updates per timed chunk")
    parser.add_argument("--rounds", type=int, default=4, help="rounds over all cases")
    parser.add_argument("--case", action="append", default=[], help='more: "KEY=VALUE ..."')
    parser.add_argument("--anchor-python", help="python of a venv with jumanji installed")
    parser.add_argument("--only", nargs="+", help="run only these of the built-in cases")
    args = parser.parse_args()
    builtin = {name: CASES[name] for name in args.only} if args.only else CASES
    cases = {**builtin, **{extra: parse_sets(extra) for extra in args.case}}
    peak = matmul_peak_flops()
    print(f"{machine_line()}; fp32 2048x2048 matmul peak {peak / 1e9:.0f} GFLOP/s")
    print(f"command: python -m bench.bench_train {shlex.join(sys.argv[1:])}\n")
    compiled = {}
    for name, overrides in cases.items():
        figures = without_step_figures() if name == NO_STEP_FIGURES else contextlib.nullcontext()
        with figures:
            compiled[name] = compile_case(overrides, args.updates)
    anchor = []
    for _ in range(args.rounds):  # interleaved, so a burst of load hits every case alike
        for case in compiled.values():
            time_chunk(case)
        if args.anchor_python:
            anchor.append(measure_anchor(args.anchor_python, args.updates))
    anchor_rate = float(np.median([a for a in anchor if a])) if any(anchor) else None
    print("| case | env-steps/s | s/update | compile+1st chunk s | GFLOP/s | of peak | vs 1st | "
          "vs anchor |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    first = None
    for name, case in compiled.items():
        cfg, seconds = case["parts"].config, float(np.median(case["seconds"]))
        rate = cfg["NUM_ENVS"] * cfg["NUM_STEPS"] * cfg["NUM_RUNS"] / seconds
        first = first or rate
        gflops = flops_per_update(case["parts"], case["runner"]) * cfg["NUM_RUNS"] / seconds / 1e9
        versus = f"{rate / anchor_rate:.2f}x" if anchor_rate else "-"
        print(f"| {name} | {rate:,.0f} | {seconds:.3f} | {case['compile_s']:.1f} | {gflops:.0f} | "
              f"{gflops * 1e9 / peak:.0%} | {rate / first:.3f} | {versus} |")  # fmt: skip
    if anchor_rate:
        rounds = ", ".join(f"{a:,.0f}" for a in anchor if a)
        print(f"| anchor: PureJaxRL-style PPO on Jumanji Snake | {anchor_rate:,.0f} | - | - | - | "
              f"- | {anchor_rate / first:.3f} | 1.00x |\n\nanchor per round: {rounds}")  # fmt: skip


if __name__ == "__main__":
    main()
