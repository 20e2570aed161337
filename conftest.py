"""pytest's setup for the whole suite (tests/ and test_lr_metrics.py)."""

import os

# The suite is mostly compiles of small programs that then run briefly: LLVM's level-1
# optimisation compiles them faster and runs them about as fast (bench/RESULTS.md, "The suite's
# time"). Set before jax is imported; the CLI runs the tests start inherit it. A user's own
# level wins.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=1"
    os.environ["XLA_FLAGS"] = flags.strip()
