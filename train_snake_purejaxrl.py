"""Train a PPO agent to play Snake: flags -> checked settings -> a run directory -> training.

    python train_snake_purejaxrl.py --lr 2.5e-4 --anneal-lr --wandb
    python train_snake_purejaxrl.py --use-muon --muon-lr 0.02 --aux-adam-lr 2.5e-4 --anneal-lr \
        --wandb
    python train_snake_purejaxrl.py --eval runs/snake-...  --render-gif game.gif

Every flag comes from a declaration in `snake_purejaxrl.config`; a bad one is answered in one
line naming it (exit status 2) before anything is created or compiled. The run directory
(`snake_purejaxrl.run_dir`), the training loop (`snake_purejaxrl.training_loop`) and the
evaluation command (`snake_purejaxrl.eval_command`) do the rest.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

from snake_purejaxrl.checkpoints import CheckpointError
from snake_purejaxrl.config import (
    OPTION_BY_KEY,
    RUN_OPTIONS,
    SETTING_BY_KEY,
    SETTINGS,
    option_defaults,
)
from snake_purejaxrl.devices import start_distributed
from snake_purejaxrl.eval_command import evaluate_command
from snake_purejaxrl.outputs import warn
from snake_purejaxrl.run_dir import prepare
from snake_purejaxrl.settings import Bool, ConfigError
from snake_purejaxrl.training_loop import EXIT_SIGINT, Trainer

GROUP_TITLES = {
    "game": "the game",
    "agent": "the agent",
    "PPO": "PPO",
    "optimizer": "the optimizer",
    "runs": "runs side by side (seeds x learning rates) and devices",
    "checkpoints": "checkpoints",
    "evaluation": "evaluation and watching it play",
    "outputs": "outputs",
    "hosts": "several hosts (jax.distributed)",
}
DECLARED = {**SETTING_BY_KEY, **OPTION_BY_KEY}


class BoolFlag(argparse.Action):
    """--name, --no-name, or --name=VALUE with VALUE True/False/true/false/1/0 (a sweep agent's
    form); a bad VALUE is ConfigError naming the flag."""

    def __init__(self, option_strings, dest, **kwargs):
        flag = option_strings[0]
        super().__init__([flag, "--no-" + flag[2:]], dest, nargs="?", **kwargs)

    def __call__(self, parser, namespace, value, option_string=None):
        negated = option_string.startswith("--no-")
        if value is not None and negated:
            raise ConfigError(f"{option_string} takes no value, got {value!r}")
        parsed = True if value is None else DECLARED[self.dest].parse(value)
        setattr(namespace, self.dest, None if parsed is None else parsed != negated)

    def format_usage(self) -> str:
        return " | ".join(self.option_strings)


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line on stderr (no usage dump), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """Every setting and run option as a flag, with its doc and default, from the declarations.
    Defaults are left out of the parsed namespace, so the flags a user gave are known."""
    parser = OneLineErrorParser(
        usage="%(prog)s [--setting VALUE ...]   (train; --resume continues a run)\n"
        "       %(prog)s --eval DIR [--render-gif PATH] [--eval-episodes N]   (evaluate)",
        description="PPO on Snake in pure JAX (Adam or Muon, learning-rate schedules). "
        "Settings marked [resume] may change when a run is resumed.",
    )
    groups = {name: parser.add_argument_group(title) for name, title in GROUP_TITLES.items()}
    for setting in (*SETTINGS, *RUN_OPTIONS):
        tag = " [resume]" if setting.on_resume and setting.key in SETTING_BY_KEY else ""
        help_text = f"{setting.doc} (default: {setting.show(setting.default)}){tag}"
        kwargs: dict[str, Any] = {"dest": setting.key, "default": argparse.SUPPRESS}
        if isinstance(setting, Bool):
            kwargs["action"], kwargs["metavar"] = BoolFlag, "BOOL"
        else:
            kwargs["metavar"] = setting.key.split("_")[-1] if setting.key != "EVAL" else "DIR"
        groups[setting.group].add_argument(
            setting.flag, help=help_text.replace("%", "%%"), **kwargs
        )
    return parser


def parse_given(parser: argparse.ArgumentParser, argv: list[str] | None) -> dict[str, Any]:
    """{KEY: checked value} of the flags given on the command line (ConfigError if bad)."""
    given = vars(parser.parse_args(argv))
    return {
        key: value if isinstance(DECLARED[key], Bool) else DECLARED[key].parse(value)
        for key, value in given.items()
    }


def in_flag_names(message: str) -> str:
    """Config-key names in an error message -> the flags a CLI user types."""
    for key in sorted(DECLARED, key=len, reverse=True):
        message = re.sub(rf"\b{key}\b", DECLARED[key].flag, message)
    return message


def main(argv: list[str] | None = None) -> int:
    """Train (a new run, or --resume) or evaluate (--eval DIR); returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    try:
        given = parse_given(parser, argv)
        settings = {k: v for k, v in given.items() if k in SETTING_BY_KEY}
        given_options = {k: v for k, v in given.items() if k in OPTION_BY_KEY}
        options = {**option_defaults(), **given_options}
        if options["EVAL"]:
            return evaluate_command(settings, options)
        for key in ("RENDER_GIF", "RENDER_ASCII"):
            if options[key]:
                raise ConfigError(f"{key} needs EVAL: it shows a game of a saved agent")
        start_distributed(options)
        return Trainer(prepare(settings, given_options)).train()
    except (ConfigError, CheckpointError) as error:
        parser.error(in_flag_names(str(error)))
    except KeyboardInterrupt:
        warn("interrupted")
        return EXIT_SIGINT


if __name__ == "__main__":
    sys.exit(main())
