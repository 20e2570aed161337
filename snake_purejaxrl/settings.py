"""Settings declared once: each `Setting` knows its key, default, one-line doc, allowed values
and whether it may change when a run resumes; the config check, the command-line flags (help and
defaults included) and the WandB config are all generated from the declarations.

`Int`, `Float`, `Bool`, `Choice`, `Text` and `Numbers` are the kinds; a declaration reads
`Float("GAMMA", 0.99, "discount", low=0, high=1, group="PPO")`. The flag is the key in lower
case with dashes (--gamma); a bad value raises ConfigError naming the key and what it allows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np


class ConfigError(ValueError):
    """A bad setting; the message names its key (the CLI shows the flag instead)."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class Setting:
    """One setting, declared once: its check, its CLI flag (with help and default) and its
    WandB config entry are all made from this. `on_resume`: may differ when a run resumes."""

    key: str
    default: Any
    doc: str
    _: dataclasses.KW_ONLY
    group: str
    on_resume: bool = False
    auto: str | None = None  # None is then allowed: "derived from other settings", as this says

    @property
    def flag(self) -> str:
        return "--" + self.key.lower().replace("_", "-")

    def allowed(self) -> str:
        raise NotImplementedError

    def is_valid(self, value: Any) -> bool:
        raise NotImplementedError

    def normalize(self, value: Any) -> Any:
        return value

    def check(self, value: Any) -> Any:
        """`value` in its canonical type, or ConfigError naming the key and what it allows."""
        if value is None and self.auto:
            return None
        if not self.is_valid(value):
            allowed = self.allowed() + (f" or 'auto' ({self.auto})" if self.auto else "")
            raise ConfigError(f"{self.key} must be {allowed}, got {value!r}")
        return self.normalize(value)

    def parse(self, text: str) -> Any:
        """A command-line string -> a checked value ('auto' -> None where allowed)."""
        return None if self.auto and text.lower() == "auto" else self.from_text(text)

    def from_text(self, text: str) -> Any:
        return self.check(text)

    def show(self, value: Any) -> str:
        """How a value reads in --help and messages."""
        return f"auto: {self.auto}" if value is None and self.auto else str(value)


def _range_text(low, high, low_open: bool = False, high_open: bool = False) -> str:
    """'in [0, 1]', 'in [0, 1)', '> 0', '>= 1' or '' (no bounds)."""
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    return f"{'<' if high_open else '<='} {high}" if high is not None else ""


def _parse_number(text: str) -> Any:
    """'128' -> 128, '5e6' -> 5000000.0, anything else unchanged (the check then names it)."""
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


@dataclasses.dataclass(frozen=True, kw_only=True)
class Int(Setting):
    """An integer in [low, high]."""

    low: int | None = None
    high: int | None = None

    def allowed(self) -> str:
        return f"an integer {_range_text(self.low, self.high)}".rstrip()

    def is_valid(self, value: Any) -> bool:
        return (
            _is_number(value)
            and np.isfinite(value)
            and int(value) == value
            and (self.low is None or value >= self.low)
            and (self.high is None or value <= self.high)
        )

    def normalize(self, value: Any) -> Any:
        return int(value)

    def from_text(self, text: str) -> Any:
        return self.check(_parse_number(text))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Float(Setting):
    """A finite number in [low, high] (or (low, high] with low_open)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def allowed(self) -> str:
        bounds = _range_text(self.low, self.high, self.low_open, self.high_open)
        return f"a number {bounds}" if bounds else "a finite number"

    def is_valid(self, value: Any) -> bool:
        if not _is_number(value) or not np.isfinite(value):
            return False
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def normalize(self, value: Any) -> Any:
        return float(value)

    def from_text(self, text: str) -> Any:
        return self.check(_parse_number(text))


BOOL_TEXT = {"true": True, "1": True, "false": False, "0": False}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Bool(Setting):
    """True or False; on the command line --name / --no-name, or --name=True|False|true|false|
    1|0 (what a WandB sweep agent writes)."""

    def allowed(self) -> str:
        return "True or False"

    def is_valid(self, value: Any) -> bool:
        return isinstance(value, (bool, np.bool_))

    def normalize(self, value: Any) -> Any:
        return bool(value)

    def from_text(self, text: str) -> Any:
        if text.lower() not in BOOL_TEXT:
            raise ConfigError(f"{self.key} must be True or False (or true, false, 1, 0), got "
                              f"{text!r}")  # fmt: skip
        return BOOL_TEXT[text.lower()]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Choice(Setting):
    choices: tuple[str, ...]

    def allowed(self) -> str:
        return f"one of {', '.join(self.choices)}"

    def is_valid(self, value: Any) -> bool:
        return value in self.choices


@dataclasses.dataclass(frozen=True, kw_only=True)
class Text(Setting):
    """Any string, or None where the default is None (e.g. an output path that is off)."""

    def allowed(self) -> str:
        return "a string"

    def is_valid(self, value: Any) -> bool:
        return isinstance(value, str) or (value is None and self.default is None)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Numbers(Setting):
    """A list of numbers in (low, high) (ints with `integer`; exactly `count` of them if
    given); comma-separated on the command line, brackets allowed (`[128, 128]`, as a WandB
    sweep agent writes a YAML list)."""

    low: float = 0
    high: float | None = None
    integer: bool = False
    empty_ok: bool = False
    count: int | None = None

    def allowed(self) -> str:
        kind = "integers" if self.integer else "numbers"
        bounds = f"in ({self.low}, {self.high})" if self.high is not None else f"> {self.low}"
        empty = " (or empty)" if self.empty_ok else ""
        size = f"{self.count} " if self.count else ""
        return f"a comma-separated list of {size}{kind} {bounds}{empty}"

    def is_valid(self, value: Any) -> bool:
        if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
            return False
        if len(value) == 0:
            return self.empty_ok
        if self.count is not None and len(value) != self.count:
            return False
        return all(
            _is_number(v)
            and np.isfinite(v)
            and v > self.low
            and (self.high is None or v < self.high)
            and (not self.integer or int(v) == v)
            for v in value
        )

    def normalize(self, value: Any) -> Any:
        return tuple(int(v) if self.integer else float(v) for v in value)

    def from_text(self, text: str) -> Any:
        inner = text.strip()
        if inner.startswith("[") and inner.endswith("]"):
            inner = inner[1:-1]
        parts = [p for p in inner.replace(" ", "").split(",") if p]
        return self.check(tuple(_parse_number(p) for p in parts))

    def show(self, value: Any) -> str:
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) or "none"
