"""Run name rules, generated names and experiment names."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridctl.cli.errors import GridctlError
from gridctl.cli.names import (
    ADJECTIVES,
    ANIMALS,
    RUN_NAME_RE,
    experiment_name,
    generate_run_name,
    split_experiment_name,
    validate_run_name,
)

VALID = ["a", "a1", "my-run", "abc-123", "resnet50-lr-sweep", "a--b", "x" * 40, "run-exp", "exp3"]


@pytest.mark.parametrize("name", VALID)
def test_valid_names_pass(name: str) -> None:
    assert validate_run_name(name) == name
    assert RUN_NAME_RE.fullmatch(name)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("", "run name is empty"),
        ("x" * 41, f"run name '{'x' * 41}' is 41 characters long; the limit is 40"),
        (
            "My-run",
            "run name 'My-run' contains 'M': only lowercase letters, digits and '-' are allowed",
        ),
        (
            "my_run",
            "run name 'my_run' contains '_': only lowercase letters, digits and '-' are allowed",
        ),
        (
            "a b.c",
            "run name 'a b.c' contains ' ', '.'"
            ": only lowercase letters, digits and '-' are allowed",
        ),
        ("1abc", "run name '1abc' must start with a letter"),
        ("-abc", "run name '-abc' must start with a letter"),
        ("abc-", "run name 'abc-' must end with a letter or digit"),
        (
            "sweep-exp3",
            "run name 'sweep-exp3' must not end in -exp<digits>: that is how experiments of a run "
            "are named",
        ),
        (
            "sweep-exp0",
            "run name 'sweep-exp0' must not end in -exp<digits>: that is how experiments of a run "
            "are named",
        ),
    ],
)
def test_invalid_names_say_which_rule(name: str, expected: str) -> None:
    with pytest.raises(GridctlError) as exc:
        validate_run_name(name)
    assert exc.value.message == expected
    assert not RUN_NAME_RE.fullmatch(name)


def test_forty_characters_is_the_limit() -> None:
    assert validate_run_name("a" * 39 + "1") == "a" * 39 + "1"
    with pytest.raises(GridctlError, match="41 characters long"):
        validate_run_name("a" * 40 + "1")


@given(st.text(alphabet="abz09-_A. ", max_size=45))
def test_regex_and_validator_agree(name: str) -> None:
    try:
        validate_run_name(name)
        valid = True
    except GridctlError:
        valid = False
    assert valid == bool(RUN_NAME_RE.fullmatch(name))


def test_generated_names_are_valid_over_many_seeds() -> None:
    names = [generate_run_name(random.Random(seed)) for seed in range(2000)]
    for name in names:
        assert validate_run_name(name) == name
        adjective, animal, number = name.split("-")
        assert adjective in ADJECTIVES and animal in ANIMALS
        assert len(number) == 4 and number.isdigit()
    assert len(set(names)) > 1900


def test_generated_names_are_reproducible_with_a_seed() -> None:
    assert generate_run_name(random.Random(7)) == generate_run_name(random.Random(7))


def test_generated_names_without_rng_vary() -> None:
    assert len({generate_run_name() for _ in range(20)}) > 1


def test_word_lists() -> None:
    for words in (ADJECTIVES, ANIMALS):
        assert 55 <= len(words) <= 80
        assert len(set(words)) == len(words)
        assert all(w.isascii() and w.isalpha() and w.islower() for w in words)
    longest = max(map(len, ADJECTIVES)) + max(map(len, ANIMALS)) + len("--1234")
    assert longest <= 40


def test_experiment_names() -> None:
    assert experiment_name("my-run", 0) == "my-run-exp0"
    assert experiment_name("my-run", 12) == "my-run-exp12"
    with pytest.raises(ValueError, match="must not be negative"):
        experiment_name("my-run", -1)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("my-run-exp0", ("my-run", 0)),
        ("my-run-exp12", ("my-run", 12)),
        ("a-exp3-exp4", None),
        ("my-run", None),
        ("my-run-exp", None),
        ("my-run-exp01", None),
        ("my-run-exp-1", None),
        ("-exp1", None),
        ("My-run-exp1", None),
        ("my-run-exp1x", None),
    ],
)
def test_split_experiment_name(name: str, expected: tuple[str, int] | None) -> None:
    assert split_experiment_name(name) == expected


@given(st.from_regex(RUN_NAME_RE, fullmatch=True), st.integers(min_value=0, max_value=10**6))
def test_experiment_names_round_trip(run: str, index: int) -> None:
    assert split_experiment_name(experiment_name(run, index)) == (run, index)
