"""Every setting of the project, declared once: the training settings (`SETTINGS`, the
upper-case config keys `make_train` takes) and the run options (`RUN_OPTIONS`: how the command
line drives and records a run). Their checks, flags, help, WandB config and resume rules are all
made from these declarations (`snake_purejaxrl.settings` holds the machinery).
"""

from __future__ import annotations

import os
from typing import Any

from snake_env import MAX_GRID, MIN_GRID, SnakeEnv
from snake_purejaxrl.settings import Bool, Choice, ConfigError, Float, Int, Numbers, Setting, Text

# Updates per jitted chunk; with the default --checkpoint-every, also the most between saves.
MAX_CHUNK = 50
# Adam's rate when Adam is picked without one (--no-use-muon): PureJaxRL's.
ADAM_LR = 2.5e-4
WANDB_MODES = ("online", "offline", "disabled")

# Every training setting, declared once: default_config(), validate_config(), the CLI flags and
# help, the WandB config and the resume check all read this tuple. `on_resume=True`: may differ
# when a checkpointed run is resumed (everything that shapes the state, the network, the
# optimizer or the schedule may not).
# fmt: off
SETTINGS: tuple[Setting, ...] = (
    # ---- the game
    Int("GRID_SIZE", 12, "board side", low=MIN_GRID, high=MAX_GRID, group="game"),
    Float("FOOD_REWARD", 1.0, "reward for eating (scores always count food eaten)",
          group="game", on_resume=True),
    Float("DEATH_REWARD", -1.0, "reward for dying (wall or body)", group="game", on_resume=True),
    Float("STEP_REWARD", 0.0, "reward for any other move", group="game", on_resume=True),
    Int("MAX_STEPS", None, "moves before a game is truncated", low=1, auto="64 * GRID_SIZE**2",
        group="game", on_resume=True),
    Int("STARVATION_STEPS", None, "moves without food before a game is truncated", low=1,
        auto="GRID_SIZE**2", group="game", on_resume=True),
    Float("LONG_START_PROB", 0.0, "curriculum: share of training games that start as a long "
          "snake (evaluation never does)", low=0, high=1, group="game", on_resume=True),
    Numbers("LONG_START_FILL", (0.5, 0.85), "curriculum: a long start fills between these "
            "shares of the board", high=1, count=2, group="game", on_resume=True),
    Float("APPROACH_REWARD", 0.0, "training only: reward per cell a move brings the head closer "
          "to the food (the same taken per cell farther; sums to the same over any path to it)",
          low=0, group="game", on_resume=True),
    Float("WIN_REWARD", 0.0, "training only: extra reward for the move that fills the board "
          "(on top of its food reward), so the endgame's safety weighs more", low=0,
          group="game", on_resume=True),
    Bool("STARVATION_IS_DEATH", False, "training only: starving ends a game as a death (death "
         "reward, no bootstrap) instead of a truncation", group="game", on_resume=True),
    # ---- the agent
    Choice("VIEW", "egocentric", "what the network sees: head-centred and heading-up, or the "
           "board as the env gives it", choices=("egocentric", "board"), group="agent"),
    Choice("TORSO", "shared", "one trunk for policy and value, or a separate network each",
           choices=("shared", "separate"), group="agent"),
    Numbers("HIDDEN_SIZES", (128, 128), "MLP layer widths", integer=True, group="agent"),
    Choice("ACTIVATION", "tanh", "hidden-layer activation", choices=("tanh", "relu"),
           group="agent"),
    Choice("PRECISION", "float32", "number type of the hidden layers' matmuls and activations "
           "(bfloat16: half the bits where the CPU or GPU has bf16 units; bfloat16-input: only "
           "the first layer's product over the view, its gradient float32; the weights, "
           "optimizer state, heads, loss, advantages and value targets stay float32)",
           choices=("float32", "bfloat16", "bfloat16-input"), group="agent"),
    Bool("ACTION_MASKING", True, "never sample moves that die at once (env.action_mask)",
         group="agent"),
    Bool("FLOOD_FILL", True, "also give the network, per move, the share of free cells still "
         "reachable and whether the tail is", group="agent"),
    Bool("FOOD_DISTANCE", False, "also give the network, per move, how many moves the food is "
         "away through the free cells (from the flood fill; needs --flood-fill)", group="agent"),
    Bool("TIMED_FLOOD", False, "also give the network, per move, a flood fill in which the body "
         "frees as the snake moves: whether the snake can follow its tail out of there, and how "
         "many moves the food is away (food in a pocket of the body opens up)", group="agent"),
    Bool("HUNGER", False, "also give the network the moves since the last food, as a share of "
         "the starvation limit", group="agent"),
    Bool("MIRROR", False, "augment: play a random half of the training games mirrored "
         "left-right (egocentric view)", group="agent"),
    # ---- PPO
    Int("TOTAL_TIMESTEPS", 10_000_000, "env steps of each run; may grow on --resume, and the "
        "learning-rate schedule then stretches to the new length", low=1, group="PPO",
        on_resume=True),
    Int("NUM_ENVS", 256, "games played in parallel per run", low=1, group="PPO"),
    Int("NUM_STEPS", 128, "moves per game per update (rollout length)", low=1, group="PPO"),
    Int("UPDATE_EPOCHS", 4, "passes over each rollout", low=1, group="PPO"),
    Int("NUM_MINIBATCHES", 8, "minibatches per pass", low=1, group="PPO"),
    Float("GAMMA", 0.999, "discount", low=0, high=1, group="PPO", on_resume=True),
    Float("GAE_LAMBDA", 0.95, "GAE lambda", low=0, high=1, group="PPO", on_resume=True),
    Float("CLIP_EPS", 0.2, "PPO ratio clip", low=0, low_open=True, group="PPO", on_resume=True),
    Float("GREEDY_SHARE", 0.0, "training only: share of the training games that play "
          "greedily (the most likely move, as --eval scores), so the updates also learn from "
          "greedy play's mistakes, such as loops that sampling would leave", low=0, high=1,
          high_open=True, group="PPO", on_resume=True),
    Float("ENT_COEF", 0.01, "entropy bonus weight (of the first update, with --ent-coef-final)",
          low=0, group="PPO", on_resume=True),
    Float("ENT_COEF_FINAL", None, "entropy bonus weight of the last update, reached in a "
          "straight line from --ent-coef (stretches to the new length on --resume)", low=0,
          auto="--ent-coef throughout", group="PPO", on_resume=True),
    Float("VF_COEF", 0.5, "value loss weight", low=0, group="PPO", on_resume=True),
    Float("VF_CLIP", None, "how far one update may move the value from the rollout's before "
          "the value loss stops pulling it (0: no clip)", low=0, auto="--clip-eps", group="PPO",
          on_resume=True),
    Float("AVERAGE_LAST", 0.0, "the agent a run keeps (checkpoints, --eval) is the mean of its "
          "weights over this last share of the updates; training acts with the current ones "
          "(0: the last weights)", low=0, high=1, group="PPO"),
    Float("MAX_GRAD_NORM", 0.5, "global gradient-norm clip", low=0, low_open=True, group="PPO",
          on_resume=True),
    # ---- the optimizer
    Float("LR", None, "Adam learning rate; giving it (or --lr-sweep) picks Adam unless "
          "--use-muon is given", low=0, low_open=True, auto=f"{ADAM_LR:g}", group="optimizer"),
    Bool("ANNEAL_LR", False, "decay every learning rate linearly to 0 over the run (short for "
         "--lr-schedule linear)", group="optimizer"),
    Choice("LR_SCHEDULE", "constant", "shape of every learning rate over the run, after any "
           "warm-up", choices=("constant", "linear", "cosine"), group="optimizer"),
    Float("WARMUP_FRACTION", 0.0, "linear warm-up of every learning rate over this fraction of "
          "the updates", low=0, high=1, high_open=True, group="optimizer"),
    Bool("USE_MUON", None, "Muon for hidden weight matrices, aux Adam for biases and heads "
         "(off: Adam for every weight)", auto="on, unless --lr or --lr-sweep is given",
         group="optimizer"),
    Float("MUON_LR", 0.01, "Muon learning rate", low=0, low_open=True, group="optimizer"),
    Float("AUX_ADAM_LR", 2.5e-4, "aux Adam learning rate (biases, heads) with Muon", low=0,
          low_open=True, group="optimizer"),
    Float("MUON_MOMENTUM", 0.95, "Muon's Nesterov momentum", low=0, high=1, group="optimizer"),
    Int("MUON_NS_STEPS", 5, "Newton-Schulz iterations per Muon update (cost grows linearly)",
        low=1, group="optimizer"),
    Bool("MUON_INPUT_LAYER", True, "Muon also for the first layer (else aux Adam takes it)",
         group="optimizer"),
    # ---- many runs in one compile, and devices
    Int("SEED", 0, "PRNG seed (of the first run)", low=0, high=2**32 - 1, group="runs"),
    Int("NUM_SEEDS", 1, "train seeds SEED .. SEED+N-1 side by side in one compile", low=1,
        group="runs"),
    Numbers("LR_SWEEP", (), "Adam learning rates trained side by side (x seeds), in place of "
            "--lr", empty_ok=True, group="runs"),
    Numbers("MUON_LR_SWEEP", (), "Muon learning rates trained side by side (x seeds), in place "
            "of --muon-lr", empty_ok=True, group="runs"),
    Int("DEVICES", 0, "devices to shard the games over (0: every visible device)", low=0,
        group="runs", on_resume=True),
)
# fmt: on
SETTING_BY_KEY = {s.key: s for s in SETTINGS}
DERIVED_KEYS = ("NUM_UPDATES", "MINIBATCH_SIZE", "NUM_RUNS")


def default_config() -> dict[str, Any]:
    """Every setting's default, PureJaxRL's upper-case names; the derived keys are not in it."""
    return {s.key: s.default for s in SETTINGS}


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Checked copy of `config` (defaults filled in) with NUM_UPDATES, MINIBATCH_SIZE, NUM_RUNS.

    Raises ConfigError (a ValueError) naming the key and its allowed values; nothing deep in JAX
    ever sees a bad value."""
    unknown = sorted(set(config) - set(SETTING_BY_KEY) - set(DERIVED_KEYS))
    if unknown:
        raise ConfigError(f"unknown config key(s) {unknown}; known: {sorted(SETTING_BY_KEY)}")
    cfg = {**default_config(), **{k: v for k, v in config.items() if k not in DERIVED_KEYS}}
    for setting in SETTINGS:
        cfg[setting.key] = setting.check(cfg[setting.key])
    _pick_optimizer(cfg)
    _check_relations(cfg)
    cfg["LR_SCHEDULE"] = "linear" if cfg["ANNEAL_LR"] else cfg["LR_SCHEDULE"]
    cfg["ANNEAL_LR"] = cfg["LR_SCHEDULE"] == "linear"  # the two always agree
    batch = cfg["NUM_ENVS"] * cfg["NUM_STEPS"]
    cfg["NUM_UPDATES"] = cfg["TOTAL_TIMESTEPS"] // batch
    cfg["MINIBATCH_SIZE"] = batch // cfg["NUM_MINIBATCHES"]
    cfg["NUM_RUNS"] = len(swept_rates(cfg)) * cfg["NUM_SEEDS"]
    return cfg


def _pick_optimizer(cfg: dict[str, Any]) -> None:
    """USE_MUON auto: Muon (the optimizer study's winner) unless an Adam rate was given, so that
    `--lr X` still means an Adam run; LR auto: ADAM_LR."""
    if cfg["USE_MUON"] is None:
        cfg["USE_MUON"] = cfg["LR"] is None and not cfg["LR_SWEEP"]
    if cfg["LR"] is None:
        cfg["LR"] = ADAM_LR


# Settings only one optimizer reads: Adam's rate, and Muon's with its aux Adam's.
ADAM_ONLY = ("LR",)
MUON_ONLY = ("MUON_LR", "AUX_ADAM_LR", "MUON_MOMENTUM", "MUON_NS_STEPS", "MUON_INPUT_LAYER")


def check_optimizer_settings(given: dict[str, Any]) -> None:
    """Refuse given settings that the picked optimizer would ignore (ConfigError naming them):
    `--use-muon --lr X` would train Muon and never read X. Only what a user gave is checked; a
    validated config carries LR even under Muon, and the Python API accepts that."""
    cfg = {key: given.get(key) for key in ("USE_MUON", "LR")}
    cfg["LR_SWEEP"] = given.get("LR_SWEEP", ())
    _pick_optimizer(cfg)
    picked, other = ("Muon", ADAM_ONLY) if cfg["USE_MUON"] else ("Adam", MUON_ONLY)
    unused = [key for key in other if key in given]
    if not unused:
        return
    if given.get("USE_MUON") is not None:
        why = f"USE_MUON {'on' if cfg['USE_MUON'] else 'off'}"
    else:
        why = f"{'LR' if 'LR' in given else 'LR_SWEEP'} given"
    if cfg["USE_MUON"]:
        hint = "Muon takes MUON_LR, its aux Adam AUX_ADAM_LR; without USE_MUON it trains Adam"
    else:
        hint = f"drop {'them' if len(unused) > 1 else 'it'}, or train Muon with USE_MUON"
    raise ConfigError(
        f"{', '.join(unused)} would go unused: this run trains {picked} ({why}); {hint}"
    )


def _check_relations(cfg: dict[str, Any]) -> None:
    """Checks that involve more than one setting (ConfigError naming them)."""
    batch = cfg["NUM_ENVS"] * cfg["NUM_STEPS"]
    if batch % cfg["NUM_MINIBATCHES"]:
        raise ConfigError(
            f"NUM_MINIBATCHES must divide NUM_ENVS * NUM_STEPS = {batch}, "
            f"got {cfg['NUM_MINIBATCHES']}"
        )
    if cfg["TOTAL_TIMESTEPS"] < batch:
        raise ConfigError(
            f"TOTAL_TIMESTEPS must be >= NUM_ENVS * NUM_STEPS = {batch} (one update), "
            f"got {cfg['TOTAL_TIMESTEPS']}"
        )
    if cfg["FOOD_DISTANCE"] and not cfg["FLOOD_FILL"]:
        raise ConfigError("FOOD_DISTANCE comes from the flood fill; it needs FLOOD_FILL on")
    if cfg["ANNEAL_LR"] and cfg["LR_SCHEDULE"] == "cosine":
        raise ConfigError("ANNEAL_LR is short for LR_SCHEDULE linear; it cannot go with cosine")
    if cfg["LR_SWEEP"] and cfg["USE_MUON"]:
        raise ConfigError("LR_SWEEP sweeps Adam's rate; with USE_MUON sweep MUON_LR_SWEEP")
    if cfg["MUON_LR_SWEEP"] and not cfg["USE_MUON"]:
        raise ConfigError("MUON_LR_SWEEP needs USE_MUON; without Muon sweep LR_SWEEP")
    if cfg["LONG_START_FILL"][0] > cfg["LONG_START_FILL"][1]:
        raise ConfigError(f"LONG_START_FILL must be low,high with low <= high, got "
                          f"{cfg['LONG_START_FILL']}")  # fmt: skip
    if cfg["SEED"] + cfg["NUM_SEEDS"] - 1 >= 2**32:
        raise ConfigError(f"SEED + NUM_SEEDS - 1 must be < 2**32, got SEED {cfg['SEED']}")


def swept_rates(config: dict[str, Any]) -> tuple[float, ...]:
    """The base learning rates of the swept optimizer part (one entry without a sweep)."""
    if config["USE_MUON"]:
        return config["MUON_LR_SWEEP"] or (config["MUON_LR"],)
    return config["LR_SWEEP"] or (config["LR"],)


def rate_keys(config: dict[str, Any]) -> tuple[str, ...]:
    """Config keys of the learning rates a run carries: ("LR",) or ("MUON_LR", "AUX_ADAM_LR")."""
    return ("MUON_LR", "AUX_ADAM_LR") if config["USE_MUON"] else ("LR",)


def run_grid(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs one invocation trains side by side: every swept rate x every seed, rate-major.
    Each is {"SEED": s, <rate key>: lr, ...}: the settings a run of its own would need."""
    swept_key = rate_keys(config)[0]
    return [
        {"SEED": config["SEED"] + i, **{k: config[k] for k in rate_keys(config)}, swept_key: lr}
        for lr in swept_rates(config)
        for i in range(config["NUM_SEEDS"])
    ]


def make_env(config: dict[str, Any]) -> SnakeEnv:
    """The game under the config's training rules."""
    return SnakeEnv(
        grid_size=config["GRID_SIZE"],
        food_reward=config["FOOD_REWARD"],
        death_reward=config["DEATH_REWARD"],
        step_reward=config["STEP_REWARD"],
        max_steps=config["MAX_STEPS"],
        starvation_steps=config["STARVATION_STEPS"],
        long_start_prob=config["LONG_START_PROB"],
        long_start_fill=config["LONG_START_FILL"],
        starvation_is_death=config["STARVATION_IS_DEATH"],
        approach_reward=config["APPROACH_REWARD"],
        win_reward=config["WIN_REWARD"],
    )


# How a run is driven and what it writes: declared like the training settings (and parsed and
# checked by the same code), but not part of the training config nor of WandB's.
# fmt: off
RUN_OPTIONS: tuple[Setting, ...] = (
    Text("CHECKPOINT_DIR", None, "where the run's checkpoints go (default: "
         "runs/snake-<date>-<time>; 'none': no checkpoints)", group="checkpoints"),
    Int("CHECKPOINT_EVERY", None, "updates between checkpoints (a final one is always "
        "written)", low=1, auto=f"every 10% of the run, at most {MAX_CHUNK} apart",
        group="checkpoints"),
    Int("KEEP_CHECKPOINTS", 3, "checkpoints kept (the newest)", low=1, group="checkpoints"),
    Bool("RESUME", False, "continue the run in --checkpoint-dir from its latest checkpoint; only "
         "settings marked [resume] may then differ", group="checkpoints"),
    Text("EVAL", None, "instead of training, play games with the agent of DIR's latest "
         "checkpoint", group="evaluation"),
    Int("EVAL_EPISODES", 1000, "games an evaluation plays (side by side, one jit)", low=1,
        group="evaluation"),
    Choice("EVAL_POLICY", "greedy", "greedy: the most likely move; sample: moves drawn from "
           "the policy", choices=("greedy", "sample"), group="evaluation"),
    Text("RENDER_GIF", None, "with --eval: write one game as an animated GIF here (a frame per "
         "move)", group="evaluation"),
    Bool("RENDER_ASCII", False, "with --eval: print one game in the terminal, frame by frame",
         group="evaluation"),
    Text("METRICS_OUT", None, "write every update's metrics here (JSON Lines); with --eval, "
         "the figures (JSON)", group="outputs"),
    Choice("METRICS_OUT_MODE", "new", "what a run does with a --metrics-out file that exists, "
           "is not empty and is not its own: new refuses it, overwrite replaces it (a resumed run "
           "always rewrites its own)", choices=("new", "overwrite"), group="outputs"),
    Bool("QUIET", False, "no progress lines, summary only", group="outputs"),
    Bool("WANDB", False, "log to Weights & Biases", group="outputs"),
    Text("WANDB_PROJECT", "snake-purejaxrl", "WandB project", group="outputs"),
    Text("WANDB_ENTITY", None, "WandB entity (team or user)", group="outputs"),
    Text("WANDB_NAME", None, "WandB run name", group="outputs"),
    Text("WANDB_GROUP", None, "WandB group (default with several runs: <name>-<date>-<time>)",
         group="outputs"),
    Choice("WANDB_MODE", os.environ.get("WANDB_MODE", "online"), "online, offline (sync later "
           "with `wandb sync`) or disabled", choices=WANDB_MODES, group="outputs"),
    Text("COORDINATOR_ADDRESS", None, "jax.distributed: host:port of process 0 (or "
         "$JAX_COORDINATOR_ADDRESS)", group="hosts"),
    Int("NUM_PROCESSES", None, "jax.distributed: number of processes", low=1, auto="detected",
        group="hosts"),
    Int("PROCESS_ID", None, "jax.distributed: this process's index, 0 .. NUM_PROCESSES-1",
        low=0, auto="detected", group="hosts"),
)
# fmt: on
OPTION_BY_KEY = {o.key: o for o in RUN_OPTIONS}


def option_defaults() -> dict[str, Any]:
    """Every run option's default."""
    return {o.key: o.default for o in RUN_OPTIONS}
