"""Run and experiment names: the rules users see, and readable names when they give none.

Experiments are named `<run>-exp<N>`, so a run name may not look like an experiment name;
that keeps every name a user types unambiguous.
"""

from __future__ import annotations

import random
import re

from gridctl.cli.errors import GridctlError

MAX_RUN_NAME_LENGTH = 40

RUN_NAME_RE = re.compile(r"(?!.*-exp[0-9]+\Z)[a-z](?:[a-z0-9-]{0,38}[a-z0-9])?")
"""Exactly the valid run names (use with `fullmatch`)."""

_EXPERIMENT_RE = re.compile(r"(.+)-exp(0|[1-9][0-9]*)")
_EXP_SUFFIX_RE = re.compile(r"-exp[0-9]+\Z")
_ALLOWED = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")

ADJECTIVES = (
    "agile", "amber", "ancient", "bold", "brave", "breezy", "bright", "calm", "clever",
    "cosmic", "crisp", "curious", "daring", "dazzling", "eager", "electric", "elegant",
    "fancy", "fearless", "fluffy", "frosty", "gentle", "gleaming", "golden", "happy",
    "hidden", "humble", "icy", "jolly", "keen", "lively", "lucky", "lunar", "mellow",
    "mighty", "misty", "nimble", "noble", "patient", "playful", "polite", "proud",
    "quick", "quiet", "radiant", "rapid", "rustic", "serene", "shiny", "silent", "silver",
    "sleepy", "smooth", "snowy", "solar", "spry", "steady", "sunny", "swift", "tidy",
    "vivid", "witty", "zesty",
)  # fmt: skip  # packed: a word list, one a line, would take 60 lines

ANIMALS = (
    "alpaca", "badger", "beaver", "bison", "bobcat", "camel", "cheetah", "cobra",
    "condor", "coyote", "crane", "dingo", "dolphin", "eagle", "falcon", "ferret", "finch",
    "gazelle", "gecko", "gibbon", "giraffe", "heron", "hippo", "ibex", "iguana", "jackal",
    "jaguar", "koala", "lemur", "leopard", "llama", "lynx", "marmot", "meerkat", "moose",
    "narwhal", "ocelot", "octopus", "orca", "osprey", "otter", "owl", "panda", "panther",
    "pelican", "penguin", "puffin", "quokka", "rabbit", "raccoon", "raven", "salmon",
    "seal", "sparrow", "squid", "tapir", "tiger", "toucan", "turtle", "walrus", "weasel",
    "wombat", "yak", "zebra",
)  # fmt: skip  # packed: a word list, one a line, would take 60 lines


def validate_run_name(name: str) -> str:
    """Return `name` if it is a valid run name, else say which rule it breaks."""
    if not name:
        raise GridctlError("run name is empty")
    if len(name) > MAX_RUN_NAME_LENGTH:
        raise GridctlError(
            f"run name {name!r} is {len(name)} characters long; the limit is {MAX_RUN_NAME_LENGTH}"
        )
    bad = sorted(set(name) - _ALLOWED)
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        raise GridctlError(
            f"run name {name!r} contains {shown}: only lowercase letters, digits and '-' "
            "are allowed"
        )
    if not name[0].isalpha():
        raise GridctlError(f"run name {name!r} must start with a letter")
    if name[-1] == "-":
        raise GridctlError(f"run name {name!r} must end with a letter or digit")
    if _EXP_SUFFIX_RE.search(name):
        raise GridctlError(
            f"run name {name!r} must not end in -exp<digits>: "
            "that is how experiments of a run are named"
        )
    return name


def generate_run_name(rng: random.Random | None = None) -> str:
    """A readable `adjective-animal-1234` name; pass `rng` for reproducible names."""
    rng = rng or random.Random()
    return f"{rng.choice(ADJECTIVES)}-{rng.choice(ANIMALS)}-{rng.randrange(10_000):04d}"


def experiment_name(run: str, index: int) -> str:
    """The name of the `index`-th experiment (0-based, expansion order) of `run`."""
    if index < 0:
        raise ValueError(f"experiment index must not be negative, got {index}")
    return f"{run}-exp{index}"


def split_experiment_name(name: str) -> tuple[str, int] | None:
    """(run, index) when `name` is exactly what `experiment_name` would produce, else None."""
    match = _EXPERIMENT_RE.fullmatch(name)
    if match is None or not RUN_NAME_RE.fullmatch(match.group(1)):
        return None
    return match.group(1), int(match.group(2))
