"""Train a PPO agent to play Snake: flags -> config -> one jitted run -> console, JSONL, WandB.

    python train_snake_purejaxrl.py --lr 2.5e-4 --anneal-lr --wandb
    python train_snake_purejaxrl.py --use-muon --muon-lr 0.02 --aux-adam-lr 2.5e-4 --anneal-lr \
        --wandb

Every update's metrics stream out of the jitted run (a host callback) to the console, to
`--metrics-out` (JSON Lines) and to Weights & Biases (`train/<metric>` over `env_steps`).
Logging never stops training: if WandB cannot start online it says so once and runs offline.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

import train_snake_purejaxrl_impl as impl

WANDB_MODES = ("online", "offline", "disabled")
# Flags that map one-to-one onto config keys: flag -> (KEY, type, help).
_DEFAULTS = impl.default_config()
CONFIG_FLAGS = {
    "--lr": ("LR", float, "Adam learning rate (without --use-muon)"),
    "--muon-lr": ("MUON_LR", float, "Muon learning rate for hidden weight matrices"),
    "--aux-adam-lr": ("AUX_ADAM_LR", float, "aux Adam learning rate for biases and heads"),
    "--muon-momentum": ("MUON_MOMENTUM", float, "Muon's Nesterov momentum"),
    "--muon-ns-steps": ("MUON_NS_STEPS", int, "Newton-Schulz iterations per Muon update"),
    "--total-timesteps": ("TOTAL_TIMESTEPS", int, "env steps in the whole run"),
    "--num-envs": ("NUM_ENVS", int, "games played in parallel"),
    "--num-steps": ("NUM_STEPS", int, "moves per game per update"),
    "--update-epochs": ("UPDATE_EPOCHS", int, "passes over each rollout"),
    "--num-minibatches": ("NUM_MINIBATCHES", int, "minibatches per pass"),
    "--gamma": ("GAMMA", float, "discount"),
    "--gae-lambda": ("GAE_LAMBDA", float, "GAE lambda"),
    "--clip-eps": ("CLIP_EPS", float, "PPO clip range"),
    "--ent-coef": ("ENT_COEF", float, "entropy bonus weight"),
    "--vf-coef": ("VF_COEF", float, "value loss weight"),
    "--max-grad-norm": ("MAX_GRAD_NORM", float, "global gradient-norm clip"),
    "--grid-size": ("GRID_SIZE", int, "board side (4..64)"),
    "--seed": ("SEED", int, "PRNG seed"),
    "--view": ("VIEW", str, "agent's view: egocentric (head-centred) or board"),
    "--torso": ("TORSO", str, "shared actor-critic trunk or separate networks"),
    "--activation": ("ACTIVATION", str, "tanh or relu"),
}
SWITCHES = {  # --name / --no-name pairs
    "--anneal-lr": ("ANNEAL_LR", "anneal every learning rate linearly to 0 over the run"),
    "--action-masking": ("ACTION_MASKING", "never sample moves that die at once"),
    "--muon-input-layer": ("MUON_INPUT_LAYER", "Muon also for the first layer (else aux Adam)"),
}
FLAG_OF_KEY = {key: flag for flag, (key, *_) in {**CONFIG_FLAGS, **SWITCHES}.items()}
FLAG_OF_KEY.update({"USE_MUON": "--use-muon", "HIDDEN_SIZES": "--hidden-sizes"})


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line on stderr (no usage dump), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        description="PPO on Snake in pure JAX (Adam or Muon, annealed learning rates).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    for flag, (key, kind, help_text) in CONFIG_FLAGS.items():
        choices = impl.CHOICES.get(key)
        parser.add_argument(
            flag, type=kind, default=_DEFAULTS[key], choices=choices, help=help_text
        )
    for flag, (key, help_text) in SWITCHES.items():
        parser.add_argument(
            flag, action=argparse.BooleanOptionalAction, default=_DEFAULTS[key], help=help_text
        )
    parser.add_argument(
        "--use-muon", action="store_true", help="Muon for hidden matrices + aux Adam for the rest"
    )
    parser.add_argument(
        "--hidden-sizes",
        default=",".join(map(str, _DEFAULTS["HIDDEN_SIZES"])),
        help="MLP widths, comma-separated",
    )
    parser.add_argument("--wandb", action="store_true", help="log to Weights & Biases")
    parser.add_argument("--wandb-project", default="snake-purejaxrl", help="WandB project")
    parser.add_argument("--wandb-entity", default=None, help="WandB entity (team or user)")
    parser.add_argument("--wandb-name", default=None, help="WandB run name")
    parser.add_argument(
        "--wandb-mode",
        choices=WANDB_MODES,
        default=os.environ.get("WANDB_MODE", "online"),
        help="online, offline (sync later with `wandb sync`) or disabled; default $WANDB_MODE",
    )
    parser.add_argument("--metrics-out", default=None, help="write every update's metrics here")
    parser.add_argument("--quiet", action="store_true", help="no progress lines, summary only")
    return parser


def config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    config = {key: getattr(args, flag[2:].replace("-", "_")) for flag, (key, *_) in {
        **CONFIG_FLAGS, **SWITCHES}.items()}  # fmt: skip
    config["USE_MUON"] = args.use_muon
    try:
        config["HIDDEN_SIZES"] = tuple(int(w) for w in args.hidden_sizes.split(","))
    except ValueError:
        message = f"HIDDEN_SIZES must be comma-separated ints, got {args.hidden_sizes!r}"
        raise ValueError(message) from None
    return config


def in_flag_names(message: str) -> str:
    """Config-key names in an error message -> the flags a CLI user types."""
    for key in sorted(FLAG_OF_KEY, key=len, reverse=True):
        message = re.sub(rf"\b{key}\b", FLAG_OF_KEY[key], message)
    return message


# ================================================================== outputs


class Console:
    """A progress line while the run goes and a closing summary."""

    def __init__(self, num_updates: int, quiet: bool) -> None:
        self.num_updates, self.quiet = num_updates, quiet
        self.recent = deque(maxlen=max(1, num_updates // 10))  # (score sum, episodes)
        self.best, self.start, self.last_print = 0.0, time.perf_counter(), 0.0
        self.live = sys.stdout.isatty()

    def started(self) -> None:
        self.start = self.last_print = time.perf_counter()

    def recent_score(self) -> float:
        episodes = sum(n for _, n in self.recent)
        return sum(s for s, _ in self.recent) / max(episodes, 1)

    def update(self, row: dict[str, Any]) -> None:
        self.recent.append((row["episode_score"] * row["episodes"], row["episodes"]))
        self.best = max(self.best, row["episode_score_max"])
        now, done = time.perf_counter(), row["update"] == self.num_updates
        # A terminal gets one line redrawn twice a second; a log file a line every 5 s.
        interval = 0.5 if self.live else 5.0
        if self.quiet or (now - self.last_print < interval and not done):
            return
        self.last_print = now
        rate = row["env_steps"] / max(now - self.start, 1e-9)
        lr = f"lr {row['learning_rate']:.2e}"
        if "aux_learning_rate" in row:
            lr += f" aux {row['aux_learning_rate']:.2e}"
        line = (
            f"update {row['update']:>{len(str(self.num_updates))}}/{self.num_updates}"
            f" | {row['env_steps']:,} steps | {rate:,.0f} steps/s"
            f" | score {self.recent_score():.1f} (best {self.best:.0f}) | {lr}"
        )
        print(("\r" + line) if self.live else line, end="" if self.live and not done else "\n")
        sys.stdout.flush()


class MetricsFile:
    """JSON Lines, one row per update, written as each update arrives (nothing lost on a crash)."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.file = None
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.file = open(path, "w")  # noqa: SIM115 - kept open for the run, closed in close()

    def write(self, row: dict[str, Any]) -> None:
        if self.file:
            self.file.write(json.dumps(row) + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file:
            self.file.close()


def warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class WandbLog:
    """WandB, imported only when asked for. Falls back online -> offline; never raises."""

    def __init__(self, args: argparse.Namespace, config: dict[str, Any]) -> None:
        self.run = None
        if not args.wandb or args.wandb_mode == "disabled":
            return
        try:
            import wandb
        except ImportError:
            warn("wandb: not installed (pip install wandb); training without it")
            return
        init = dict(
            project=args.wandb_project,
            entity=args.wandb_entity,
            name=args.wandb_name,
            config=config,
            settings=wandb.Settings(init_timeout=30, silent=True),
        )
        try:
            self.run = wandb.init(mode=args.wandb_mode, **init)
        except Exception as error:  # no key, no network: keep everything, locally
            if args.wandb_mode != "online":
                warn(f"wandb: could not start ({error.__class__.__name__}); training without it")
                return
            reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
            warn(f"wandb: cannot log online ({reason}); logging offline, sync later")
            try:
                self.run = wandb.init(mode="offline", **init)
            except Exception as offline_error:
                warn(f"wandb: offline start failed too ({offline_error}); training without it")
                return
        self.run.define_metric("env_steps")
        self.run.define_metric("train/*", step_metric="env_steps")

    def log(self, row: dict[str, Any]) -> None:
        if self.run is None:
            return
        try:
            train = {f"train/{k}": v for k, v in row.items() if k not in ("env_steps", "time_s")}
            self.run.log({"env_steps": row["env_steps"], **train})
        except Exception as error:
            warn(f"wandb: logging failed ({error}); continuing without it")
            self.run = None

    def where(self) -> str | None:
        if self.run is None:
            return None
        offline = self.run.settings.mode == "offline"
        return self.run.dir.removesuffix("/files") + (
            " (offline: wandb sync it)" if offline else ""
        )

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()


def to_row(metrics: dict[str, np.ndarray], elapsed: float) -> dict[str, Any]:
    """Host metrics -> JSON-ready scalars (ints stay ints)."""
    row = {}
    for key, value in metrics.items():
        value = np.asarray(value)
        row[key] = int(value) if np.issubdtype(value.dtype, np.integer) else float(value)
    row["time_s"] = round(elapsed, 3)
    return row


# ================================================================== main


def train(config: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Compile, run, and stream every update to the outputs; returns the summary."""
    import jax  # after argument checks: a bad flag answers at once

    num_updates = config["NUM_UPDATES"]
    console = Console(num_updates, args.quiet)
    metrics_file = MetricsFile(args.metrics_out)
    wandb_log = WandbLog(args, config)
    rows: list[dict[str, Any]] = []

    def on_update(metrics: dict[str, np.ndarray]) -> None:
        row = to_row(metrics, time.perf_counter() - console.start)
        rows.append(row)
        metrics_file.write(row)
        wandb_log.log(row)
        console.update(row)

    try:
        key = jax.random.PRNGKey(config["SEED"])
        run = jax.jit(impl.make_train_with_callback(config, on_update))
        compile_start = time.perf_counter()
        compiled = run.lower(key).compile()
        compile_s = time.perf_counter() - compile_start
        if not args.quiet:
            print(f"compiled in {compile_s:.1f} s; training {num_updates} updates")
        console.started()
        jax.block_until_ready(compiled(key))
        train_s = time.perf_counter() - console.start
    finally:
        metrics_file.close()
        where_wandb = wandb_log.where()
        wandb_log.finish()
    score = np.array([r["episode_score"] for r in rows])
    episodes = np.array([r["episodes"] for r in rows])
    return {
        "updates": len(rows),
        "env_steps": rows[-1]["env_steps"],
        "train_s": train_s,
        "compile_s": compile_s,
        "final_score": float(impl.final_score(score, episodes)),
        "final_episodes": int(episodes[impl.final_updates(len(rows))].sum()),
        "best_score": max(r["episode_score_max"] for r in rows),
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "metrics_out": args.metrics_out,
        "wandb": where_wandb,
    }


def print_summary(summary: dict[str, Any]) -> None:
    rate = summary["env_steps"] / summary["train_s"]
    print(
        f"done: {summary['updates']} updates, {summary['env_steps']:,} env steps in "
        f"{summary['train_s']:.1f} s ({rate:,.0f} env-steps/s), "
        f"compile {summary['compile_s']:.1f} s, peak RSS {summary['peak_rss_gib']:.2f} GiB"
    )
    print(
        f"final mean score {summary['final_score']:.2f} ({summary['final_episodes']} episodes of "
        f"the last 10% of updates), best score {summary['best_score']:.0f}"
    )
    if summary["metrics_out"]:
        print(f"metrics: {summary['metrics_out']}")
    if summary["wandb"]:
        print(f"wandb run: {summary['wandb']}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = impl.validate_config(config_from_args(args))
    except ValueError as error:
        parser.error(in_flag_names(str(error)))
    try:
        summary = train(config, args)
    except KeyboardInterrupt:
        warn("interrupted; metrics written so far are kept")
        return 130
    print_summary(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
