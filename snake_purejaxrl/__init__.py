"""snake-purejaxrl's modules besides the design card's top-level ones, one job each: the settings
(`settings`, `config`), the agent's input, devices, evaluation, rendering, and the command line's
run directory (`checkpoints`, `run_dir`), outputs, training loop and eval command."""
