"""Where a run's arrays live: XLA's flags, a mesh of devices, the games sharded over it.

Data-parallel PPO by JAX's own engine: every game's state is split over the mesh's "games" axis,
weights and optimizer state are replicated, and the compiler inserts the gradient all-reduce.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from snake_purejaxrl.settings import ConfigError

# XLA flags this project needs, each added unless XLA_FLAGS already names it. XLA reads them
# when JAX starts its backend (first computation), not at import.
# - XLA:CPU's concurrency-optimized scheduler deadlocked (0% CPU, forever) on
#   jit(vmap(make_train)) with 256 envs and the egocentric network (jax 0.10.2); the default
#   scheduler ran as fast. tests/test_ppo.py guards it.
# - XLA:GPU sums with atomics by default, so two identical runs differed from the first update
#   and a resumed run was not bit-exact (H200, jax 0.11.2); deterministic ops made them equal
#   (its cost is in bench/RESULTS.md). No effect on CPU.
XLA_DEFAULTS = (
    "--xla_cpu_enable_concurrency_optimized_scheduler=false",
    "--xla_gpu_deterministic_ops=true",
)


def add_xla_defaults(flags: tuple[str, ...] = XLA_DEFAULTS) -> None:
    """Add each of `flags` to $XLA_FLAGS unless the user's flags already name it."""
    for flag in flags:
        if flag.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
            os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()


GAMES_AXIS = "games"


def make_mesh(devices: int = 0) -> Mesh:
    """A 1-D mesh over the first `devices` devices of every process (0: all of them)."""
    available = jax.devices()
    count = len(available) if devices == 0 else devices
    if count > len(available):
        raise ConfigError(f"DEVICES must be <= the {len(available)} visible devices, got {count}")
    return Mesh(np.array(available[:count]), (GAMES_AXIS,))


def check_divisible(config: dict[str, Any], mesh: Mesh) -> None:
    """ConfigError unless the games split evenly over the mesh."""
    devices = mesh.devices.size
    if config["NUM_ENVS"] % devices:
        raise ConfigError(
            f"NUM_ENVS must be a multiple of the {devices} devices it is sharded over, "
            f"got {config['NUM_ENVS']}"
        )


def runner_shardings(runner, mesh: Mesh):
    """Shardings for a runner with a leading run axis: every game's state and observation split
    over the mesh along the games axis; weights, optimizer state, keys and counters replicated
    (the compiler then all-reduces the gradients)."""
    replicated = NamedSharding(mesh, PartitionSpec())
    by_game = NamedSharding(mesh, PartitionSpec(None, GAMES_AXIS))
    shardings = jax.tree.map(lambda _: replicated, runner)
    per_game = jax.tree.map(
        lambda _: by_game, (runner.env_state, runner.obs, runner.episode_return)
    )
    return shardings.replace(env_state=per_game[0], obs=per_game[1], episode_return=per_game[2])


def place(tree, shardings):
    """Host (numpy) arrays -> global arrays laid out by `shardings`: each process hands over
    the shards its devices hold, so this works across hosts too."""
    return jax.tree.map(
        lambda x, s: jax.make_array_from_callback(x.shape, s, lambda index, x=x: x[index]),
        tree,
        shardings,
    )


def init_placed(init: Callable[[], Any], shardings):
    """A fresh runner computed on this process's first device, then laid out by `shardings`.

    Computing it partitioned over devices (`jit(init, out_shardings=...)`) deadlocked on
    XLA:CPU with 2 devices and several runs (jax 0.10.2; a vmapped init, at 0% CPU); this way
    costs one host copy of the initial state, once."""
    return place(jax.device_get(jax.jit(init)()), shardings)


def start_distributed(options: dict) -> None:
    """jax.distributed.initialize when any of its flags (or $JAX_COORDINATOR_ADDRESS) is set;
    must run before JAX computes anything."""
    wanted = ("COORDINATOR_ADDRESS", "NUM_PROCESSES", "PROCESS_ID")
    if not any(options[k] is not None for k in wanted) and not os.environ.get(
        "JAX_COORDINATOR_ADDRESS"
    ):
        return
    if jax.config.jax_platforms in (None, "", "cpu") or os.environ.get("JAX_PLATFORMS") == "cpu":
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=options["COORDINATOR_ADDRESS"],
        num_processes=options["NUM_PROCESSES"],
        process_id=options["PROCESS_ID"],
    )
