"""pytest's setup for the whole suite (tests/ and test_lr_metrics.py)."""

import os

from snake_purejaxrl.devices import add_xla_defaults

# The suite is mostly compiles of small programs that then run briefly, so it asks XLA:CPU to
# compile fast rather than run fast: LLVM's level-1 optimisation, and the older loop emitters
# in place of the fusion emitters (a small PPO compiles in about 0.55x the time; a full-size
# training update runs at about 0.76x, which is why training keeps XLA's defaults). Set before
# JAX starts its backend; the CLI runs the tests start inherit them. A user's own value for a
# flag wins. bench/RESULTS.md, "The suite's time again".
add_xla_defaults(("--xla_backend_optimization_level=1", "--xla_cpu_use_fusion_emitters=false"))


def pytest_xdist_auto_num_workers(config):
    """`-n auto`: one worker more than the cores (at most 4, pyproject's --maxprocesses), since
    the CLI tests spend part of their time waiting on their subprocesses."""
    if hasattr(os, "sched_getaffinity"):  # Linux: the cores this process may use
        return len(os.sched_getaffinity(0)) + 1
    return (os.cpu_count() or 1) + 1
