"""Sweep parsing and expansion against SPEC section 3: forms, order, sampling, picks, errors."""

from __future__ import annotations

import builtins
import inspect
import math
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gridctl.cli.errors import EXIT_USAGE, GridctlError
from gridctl.cli.sweep import (
    CONFIRM_ABOVE,
    DISTRIBUTIONS,
    MAX_EXPERIMENTS,
    REFUSED,
    STRATEGIES,
    SWEEP_FUNCTIONS,
    Combination,
    expand,
    experiment_count,
    format_value,
    misspelt_function,
    parse_args,
)


def grid(*args: str, seed: int = 0, **options: bool) -> list[Combination]:
    parsed = parse_args(args, **options)
    return list(expand(parsed, strategy="grid_search", trials=None, seed=seed).combinations)


def swept_values(value: str, seed: int = 0) -> list[object]:
    return [combination.params["x"] for combination in grid("--x", value, seed=seed)]


def typed(values: list[object]) -> list[tuple[type, str]]:
    """Compares values by type and repr, so 1 != 1.0 != True and -0.0 != 0.0."""
    return [(type(value), repr(value)) for value in values]


def test_limits_and_strategies_match_the_spec() -> None:
    assert (CONFIRM_ABOVE, MAX_EXPERIMENTS) == (100, 10_000)
    assert STRATEGIES == ("grid_search", "random_search", "none")


# ---------------------------------------------------------------------------------------------
# Forms with values known without sampling


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("[1, 2]", [1, 2]),
        ("['cat', 'dog']", ["cat", "dog"]),
        ("['option a', 'option b', 'option c']", ["option a", "option b", "option c"]),
        ('["double", "quotes"]', ["double", "quotes"]),
        ("[True, False]", [True, False]),
        ("[-1, 2.5, 1e-3, -2E+2, +4]", [-1, 2.5, 0.001, -200.0, 4]),
        ("[1, 'a', True, 0.5]", [1, "a", True, 0.5]),
        ("  [1, 2]\n", [1, 2]),
        ("[1,\n 2,]", [1, 2]),
        ("range(0, 5, 2)", [0, 2, 4]),
        ("range(3)", [0, 1, 2]),
        ("range(5, 0, -2)", [5, 3, 1]),
        ("range(-2, 1)", [-2, -1, 0]),
        ("linspace(0, 1, 5)", [0.0, 0.25, 0.5, 0.75, 1.0]),
        ("logspace(0, 2, 3)", [1.0, 10.0, 100.0]),
    ],
)
def test_sweep_forms_give_their_values_in_order(value: str, expected: list[object]) -> None:
    combinations = grid("--x", value)
    assert typed([c.params["x"] for c in combinations]) == typed(expected)
    assert [c.args for c in combinations] == [("--x", format_value(v)) for v in expected]


@pytest.mark.parametrize(
    "value",
    [
        "foo(1)",
        "1e-3",
        "hello",
        "0.5",
        "(1, 2)",
        "{'a': 1}",
        "numpy.random.uniform(0, 1, 3)",
        "uniformly(0, 1, 3)",
        "x[1, 2]",
        "",
        " ",
    ],
)
def test_values_not_meant_as_sweeps_stay_literal(value: str) -> None:
    parsed = parse_args(["--x", value, "--y", "[1, 2]"])
    assert [flag.flag for flag in parsed.swept] == ["y"]
    assert [c.args for c in grid("--x", value, "--y", "[1, 2]")] == [
        ("--x", value, "--y", "1"),
        ("--x", value, "--y", "2"),
    ]


def test_positional_arguments_and_arguments_after_double_dash_are_never_swept() -> None:
    args = ("data.csv", "[1, 2]", "--x", "[3, 4]", "--", "--y", "[5, 6]")
    parsed = parse_args(args)
    assert [(flag.flag, flag.index) for flag in parsed.swept] == [("x", 3)]
    assert parsed.args == args


def test_switch_without_value_does_not_take_the_next_flag() -> None:
    parsed = parse_args(["--verbose", "--x", "[1, 2]", "--dry"])
    assert [(flag.flag, flag.index) for flag in parsed.swept] == [("x", 2)]


def test_equals_form_keeps_the_flag_in_the_same_token() -> None:
    parsed = parse_args(["--lr=[0.1, 0.01]", "--name", "a"])
    assert [(flag.flag, flag.index, flag.count) for flag in parsed.swept] == [("lr", 0, 2)]
    assert [c.args for c in grid("--lr=[0.1, 0.01]", "--name", "a")] == [
        ("--lr=0.1", "--name", "a"),
        ("--lr=0.01", "--name", "a"),
    ]


def test_negative_numbers_are_values_not_flags() -> None:
    combinations = grid("--lr", "-0.1", "--b", "-5", "--x", "[-1, -0.5]", "-k", "-1e-3")
    assert [c.params for c in combinations] == [{"x": -1}, {"x": -0.5}]
    assert combinations[1].args == ("--lr", "-0.1", "--b", "-5", "--x", "-0.5", "-k", "-1e-3")
    assert parse_args(["--a", "-1", "[1, 2]", "-2", "[3, 4]"]).swept == ()


def test_short_flags_are_swept_too() -> None:
    assert [c.args for c in grid("-x", "[1, 2]")] == [("-x", "1"), ("-x", "2")]


def test_dashes_to_underscores_rewrites_only_flag_names() -> None:
    args = ["--data-dir", "my-data", "--learning-rate=[1, 2]", "-a-b=x-y", "pos-arg"]
    args += ["--", "--not-a-flag"]
    combinations = grid(*args, dashes_to_underscores=True)
    assert [c.params for c in combinations] == [{"learning_rate": 1}, {"learning_rate": 2}]
    assert combinations[0].args == (
        "--data_dir",
        "my-data",
        "--learning_rate=1",
        "-a_b=x-y",
        "pos-arg",
        "--",
        "--not-a-flag",
    )


def test_without_dashes_to_underscores_args_are_verbatim() -> None:
    args = ("--data-dir", "my-data", "--learning-rate", "[1, 2]")
    parsed = parse_args(args)
    assert parsed.args == args
    assert [flag.flag for flag in parsed.swept] == ["learning-rate"]


def test_strategy_none_passes_everything_literally() -> None:
    args = ("--x", "[1, 2]", "--y", "uniform(0, 1)", "--z=[1")
    parsed = parse_args(args, strategy="none")
    assert parsed.swept == ()
    assert experiment_count(parsed, strategy="none", trials=None) == 1
    expansion = expand(parsed, strategy="none", trials=None, seed=3)
    assert expansion.combinations == (Combination(params={}, args=args),)


def test_nothing_swept_is_one_experiment_with_the_args_as_given() -> None:
    parsed = parse_args(["--x", "1"])
    assert parsed.combinations() == 1
    expansion = expand(parsed, strategy="grid_search", trials=None, seed=0)
    assert expansion.combinations == (Combination(params={}, args=("--x", "1")),)


# ---------------------------------------------------------------------------------------------
# Sampling


# name -> arguments before the count, and the type of the values it draws
SAMPLE_CASES = {
    "beta": ("2, 5", float),
    "binomial": ("10, 0.5", int),
    "chisquare": ("3", float),
    "exponential": ("1.0", float),
    "f": ("5, 10", float),
    "gamma": ("2, 1", float),
    "geometric": ("0.3", int),
    "gumbel": ("0, 1", float),
    "hypergeometric": ("5, 5, 3", int),
    "integers": ("0, 10", int),
    "laplace": ("0, 1", float),
    "logistic": ("0, 1", float),
    "lognormal": ("0, 1", float),
    "logseries": ("0.5", int),
    "negative_binomial": ("3, 0.5", int),
    "noncentral_chisquare": ("3, 1", float),
    "noncentral_f": ("5, 10, 1", float),
    "normal": ("0, 1", float),
    "pareto": ("3", float),
    "poisson": ("3", int),
    "power": ("2", float),
    "randint": ("1, 10", int),
    "random": ("", float),
    "rayleigh": ("1", float),
    "standard_cauchy": ("", float),
    "standard_exponential": ("", float),
    "standard_gamma": ("2", float),
    "standard_normal": ("", float),
    "standard_t": ("3", float),
    "triangular": ("0, 1, 2", float),
    "uniform": ("0, 1", float),
    "vonmises": ("0, 1", float),
    "wald": ("1, 1", float),
    "weibull": ("2", float),
    "zipf": ("2", int),
}


def test_every_distribution_in_the_table_has_a_sampling_case() -> None:
    assert set(SAMPLE_CASES) == set(DISTRIBUTIONS)


@pytest.mark.parametrize("name", sorted(SAMPLE_CASES))
def test_every_distribution_samples_count_native_values(name: str) -> None:
    params, kind = SAMPLE_CASES[name]
    value = f"{name}({params}, 3)" if params else f"{name}(3)"
    values = swept_values(value, seed=7)
    assert len(values) == 3
    assert all(type(v) is kind for v in values), values
    assert all(math.isfinite(v) for v in values)


@pytest.mark.parametrize(
    ("value", "count", "check"),
    [
        ("uniform(0, 1, 3)", 3, lambda v: type(v) is float and 0 <= v < 1),
        ("normal(0, 1, 4)", 4, lambda v: type(v) is float),
        ("randint(1, 10, 2)", 2, lambda v: type(v) is int and 1 <= v < 10),
        ("loguniform(1e-5, 1e-1, 4)", 4, lambda v: type(v) is float and 1e-5 <= v <= 1e-1),
        ("exponential(1.0, 3)", 3, lambda v: type(v) is float and v >= 0),
        ("poisson(3, 4)", 4, lambda v: type(v) is int and v >= 0),
        ("standard_normal(5)", 5, lambda v: type(v) is float),
        ("choice(['a', 'b', 3, True], 6)", 6, lambda v: v in ("a", "b") or type(v) in (int, bool)),
        ("  uniform(-2, -1, 2)  ", 2, lambda v: -2 <= v < -1),
    ],
)
def test_sampled_sweeps_have_their_count_and_range(value: str, count: int, check) -> None:
    parsed = parse_args(["--x", value])
    assert parsed.swept[0].count == count
    values = swept_values(value, seed=11)
    assert len(values) == count
    assert all(check(v) for v in values), values


def test_choice_keeps_option_types_and_uses_one_generator() -> None:
    values = swept_values("choice([1, 'one', 1.5], 50)", seed=5)
    expected = [[1, "one", 1.5][i] for i in np.random.default_rng(5).choice(3, 50).tolist()]
    assert typed(values) == typed(expected)
    assert set(map(repr, values)) == {"1", "'one'", "1.5"}


def test_flags_are_sampled_in_order_from_one_seeded_generator() -> None:
    args = ["--a", "uniform(0, 1, 2)", "--b", "[1, 2]", "--c", "normal(5, 2, 2)"]
    args += ["--d", "randint(0, 100, 2)", "--e", "loguniform(1e-4, 1, 2)"]
    rng = np.random.default_rng(42)
    a = rng.uniform(0, 1, 2).tolist()
    c = rng.normal(5, 2, 2).tolist()
    d = rng.integers(0, 100, 2).tolist()
    e = np.exp(rng.uniform(math.log(1e-4), math.log(1), 2)).tolist()
    expected = [
        {"a": va, "b": vb, "c": vc, "d": vd, "e": ve}
        for va in a
        for vb in [1, 2]
        for vc in c
        for vd in d
        for ve in e
    ]
    assert [combination.params for combination in grid(*args, seed=42)] == expected


def test_same_seed_same_samples_other_seed_other_samples() -> None:
    value = "uniform(0, 1, 5)"
    assert swept_values(value, seed=1) == swept_values(value, seed=1)
    assert swept_values(value, seed=1) != swept_values(value, seed=2)


def test_numpy_generator_methods_are_all_classified() -> None:
    public = {name for name in dir(np.random.Generator) if not name.startswith("_")}
    known = (set(DISTRIBUTIONS) - {"randint"}) | {"choice"} | set(REFUSED)
    assert public == known
    assert known <= SWEEP_FUNCTIONS


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_distribution_parameters_match_numpy(name: str) -> None:
    method = getattr(np.random.default_rng(0), "integers" if name == "randint" else name)
    options = {"size", "dtype", "out", "method", "endpoint"}
    parameters = tuple(p for p in inspect.signature(method).parameters if p not in options)
    assert parameters == DISTRIBUTIONS[name]


def test_parsing_and_counting_do_not_import_numpy() -> None:
    code = (
        "import sys\n"
        "from gridctl.cli import sweep\n"
        "p = sweep.parse_args(['--x', 'uniform(0, 1, 3)', '--y', 'range(4)'])\n"
        "assert sweep.experiment_count(p, strategy='grid_search', trials=None) == 12\n"
        "assert 'numpy' not in sys.modules, 'numpy imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------------------------------------
# Formatting


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.1, "0.1"),
        (1e-05, "1e-05"),
        (0.394, "0.394"),
        (0.1 + 0.2, "0.30000000000000004"),
        (-0.0, "-0.0"),
        (2.0, "2.0"),
        (3, "3"),
        (-7, "-7"),
        (True, "True"),
        (False, "False"),
        ("no dog", "no dog"),
        ("'quoted'", "'quoted'"),
    ],
)
def test_format_value(value: object, text: str) -> None:
    assert format_value(value) == text


def test_format_value_refuses_other_types() -> None:
    with pytest.raises(TypeError):
        format_value(None)


def test_floats_in_args_use_the_shortest_round_trip_form() -> None:
    assert [c.args[1] for c in grid("--lr", "[0.1, 1e-5, 0.394]")] == ["0.1", "1e-05", "0.394"]


# ---------------------------------------------------------------------------------------------
# grid_search and random_search


def test_grid_varies_the_first_flag_slowest() -> None:
    combinations = grid("--animal", "['cat','dog']", "--food", "['pear','apple']")
    assert [c.params for c in combinations] == [
        {"animal": "cat", "food": "pear"},
        {"animal": "cat", "food": "apple"},
        {"animal": "dog", "food": "pear"},
        {"animal": "dog", "food": "apple"},
    ]
    assert combinations[1].args == ("--animal", "cat", "--food", "apple")


def random_picks(*args: str, trials: int, seed: int) -> list[dict[str, object]]:
    expansion = expand(parse_args(args), strategy="random_search", trials=trials, seed=seed)
    return [combination.params for combination in expansion.combinations]


def test_random_search_picks_distinct_combinations_in_grid_order() -> None:
    picks = random_picks("--a", "range(100)", "--b", "range(100)", trials=50, seed=3)
    keys = [(p["a"], p["b"]) for p in picks]
    assert len(keys) == 50
    assert keys == sorted(set(keys))


def test_random_search_is_reproducible_and_depends_on_the_seed() -> None:
    args = ("--a", "range(100)", "--b", "uniform(0, 1, 100)")
    assert random_picks(*args, trials=20, seed=9) == random_picks(*args, trials=20, seed=9)
    assert random_picks(*args, trials=20, seed=9) != random_picks(*args, trials=20, seed=10)


def test_random_search_picks_uniformly() -> None:
    seen = Counter(
        random_picks("--a", "[0, 1, 2, 3]", trials=1, seed=seed)[0]["a"] for seed in range(800)
    )
    assert set(seen) == {0, 1, 2, 3}
    assert all(140 <= n <= 260 for n in seen.values()), seen


def test_random_search_over_a_huge_grid_does_not_materialise_it() -> None:
    huge = "range(" + "1" + "0" * 30 + ")"
    parsed = parse_args(["--a", huge, "--b", huge])
    assert parsed.combinations() == 10**60
    assert experiment_count(parsed, strategy="random_search", trials=5) == 5
    picks = random_picks("--a", huge, "--b", huge, trials=5, seed=1)
    assert len({(p["a"], p["b"]) for p in picks}) == 5


def test_more_trials_than_combinations_runs_all_with_a_warning() -> None:
    parsed = parse_args(["--x", "[1, 2, 3]"])
    assert experiment_count(parsed, strategy="random_search", trials=10) == 3
    expansion = expand(parsed, strategy="random_search", trials=10, seed=0)
    assert [c.params["x"] for c in expansion.combinations] == [1, 2, 3]
    assert len(expansion.warnings) == 1
    assert "10" in expansion.warnings[0] and "3" in expansion.warnings[0]
    assert expand(parsed, strategy="random_search", trials=3, seed=0).warnings == ()


def test_expansion_records_its_seed() -> None:
    assert expand(parse_args([]), strategy="grid_search", trials=None, seed=1234).seed == 1234


def test_experiment_count_does_not_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed = parse_args(["--x", "uniform(0, 1, 30)", "--y", "range(1000)"])
    monkeypatch.setattr(np.random, "default_rng", None)
    assert experiment_count(parsed, strategy="grid_search", trials=None) == 30_000
    assert experiment_count(parsed, strategy="random_search", trials=7) == 7


def test_more_than_the_limit_is_refused_and_the_limit_itself_is_not() -> None:
    at_limit = parse_args(["--a", "range(100)", "--b", "range(100)"])
    assert len(expand(at_limit, strategy="grid_search", trials=None, seed=0).combinations) == 10_000
    over = parse_args(["--a", "range(101)", "--b", "range(100)"])
    assert experiment_count(over, strategy="grid_search", trials=None) == 10_100
    with pytest.raises(GridctlError) as error:
        expand(over, strategy="grid_search", trials=None, seed=0)
    assert "10,100" in error.value.message and "10,000" in error.value.message
    with pytest.raises(GridctlError):
        expand(over, strategy="random_search", trials=10_001, seed=0)
    picks = expand(over, strategy="random_search", trials=10, seed=0).combinations
    assert len(picks) == 10


# ---------------------------------------------------------------------------------------------
# Errors


def assert_usage_error(error: pytest.ExceptionInfo[GridctlError], *fragments: str) -> None:
    message = error.value.message
    assert error.value.exit_code == EXIT_USAGE
    assert len(message.splitlines()) == 1, message
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("[1, 2", "never closed"),
        ("[1 2]", "comma"),
        ("[]", "empty"),
        ("[[1, 2]]", "nested"),
        ("[(1, 2)]", "nested"),
        ("[x]", "not a number, string or boolean"),
        ("[None]", "not a number, string or boolean"),
        ("[1 + 2]", "not a number, string or boolean"),
        ("[-True]", "not a number, string or boolean"),
        ("[1j]", "not a number, string or boolean"),
        ("[b'x']", "not a number, string or boolean"),
        ("[1e999]", "not a finite number"),
        ("[0x" + "f" * 900 + "]", "more than 1000 digits"),
        ("[" + "-" * 100_000 + "1]", ""),
        ("[" + "-" * 5000 + "1]", ""),
        ("[" * 1000, ""),
        ("[1, 2][0]", "list literal"),
        ("[1] + [2]", "list literal"),
        ("uniform(0, 1)", "count"),
        ("standard_normal()", "count"),
        ("normal(0, 1, 2, 3)", "normal(loc, scale, count)"),
        ("uniform(0, 1, 0)", "positive"),
        ("uniform(0, 1, -2)", "positive"),
        ("uniform(0, 1, 2.5)", "integer"),
        ("uniform(0, 1, True)", "integer"),
        ("uniform(0, 1, 10001)", "10,000"),
        ("uniform(low=0, high=1, size=3)", "keyword"),
        ("uniform(0, 1, size=3)", "keyword"),
        ("uniform('a', 1, 3)", "not a number"),
        ("uniform(x, 1, 3)", "not a number"),
        ("uniform(*[0, 1, 3])", "got 1 argument"),
        ("uniform(0, 1, 3) * 2", "uniform(...)"),
        ("range(a)", "integer"),
        ("range(0.5)", "integer"),
        ("range(10**3)", "integer"),
        ("range()", "got 0 arguments"),
        ("range(1, 2, 3, 4)", "got 4 arguments"),
        ("range(1, 1)", "empty"),
        ("range(5, 0)", "empty"),
        ("range(0, 10, 0)", "zero"),
        ("dirichlet([1, 1], 3)", "vectors"),
        ("multivariate_normal([0], [[1]], 3)", "vectors"),
        ("permutation(10)", "not a distribution"),
        ("choice(3, 2)", "list"),
        ("choice([], 2)", "empty"),
        ("choice([1, 2])", "count"),
        ("loguniform(0, 1, 3)", "positive"),
        ("loguniform(-1, 1, 3)", "positive"),
    ],
)
def test_broken_sweeps_are_errors_naming_the_flag(value: str, problem: str) -> None:
    with pytest.raises(GridctlError) as error:
        parse_args(["--lr", value])
    assert_usage_error(error, "--lr:", problem)
    with pytest.raises(GridctlError) as error:
        parse_args([f"--lr={value}"])
    assert_usage_error(error, "--lr:", problem)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("normal(0, -1, 3)", "scale < 0"),
        ("randint(5, 1, 2)", "low >= high"),
        ("integers(0, 1e30, 2)", "cannot be sampled"),
        ("zipf(0.5, 3)", "cannot be sampled"),
        ("hypergeometric(1, 1, 5, 2)", "cannot be sampled"),
        ("normal(1" + "0" * 400 + ", 1, 2)", "cannot be sampled"),
        ("lognormal(1000, 1, 2)", "not finite"),
        ("logspace(0, 400, 2)", "not finite"),
    ],
)
def test_sampling_errors_name_the_flag(value: str, problem: str) -> None:
    for args in (["-l", value], [f"-l={value}"]):
        parsed = parse_args(args)
        with pytest.raises(GridctlError) as error:
            expand(parsed, strategy="grid_search", trials=None, seed=0)
        assert_usage_error(error, "-l:", problem)


def test_errors_stay_on_one_line_whatever_the_input() -> None:
    with pytest.raises(GridctlError) as error:
        parse_args(["--a\nb", "['x\u2028y',\n"])
    assert_usage_error(error, "--a\\nb:")


def test_a_flag_swept_twice_is_an_error() -> None:
    with pytest.raises(GridctlError) as error:
        parse_args(["--x", "[1]", "--x=[2]"])
    assert_usage_error(error, "--x", "more than once")
    assert parse_args(["--x", "[1, 2]", "--x", "3"]).combinations() == 2


def test_unknown_strategy_lists_the_valid_ones() -> None:
    parsed = parse_args(["--x", "[1, 2]"])
    calls = [
        lambda: parse_args(["--x", "1"], strategy="bayesian"),
        lambda: experiment_count(parsed, strategy="bayesian", trials=None),
        lambda: expand(parsed, strategy="bayesian", trials=None, seed=0),
    ]
    for call in calls:
        with pytest.raises(GridctlError) as error:
            call()
        assert_usage_error(error, "bayesian", *STRATEGIES)


@pytest.mark.parametrize(
    ("strategy", "trials", "fragment"),
    [
        ("grid_search", 5, "--trials"),
        ("none", 5, "--trials"),
        ("random_search", None, "--trials"),
        ("random_search", 0, "positive"),
        ("random_search", -3, "positive"),
    ],
)
def test_trials_must_fit_the_strategy(strategy: str, trials: int | None, fragment: str) -> None:
    parsed = parse_args(["--x", "[1, 2]"])
    for call in (experiment_count, expand):
        kwargs = {"seed": 0} if call is expand else {}
        with pytest.raises(GridctlError) as error:
            call(parsed, strategy=strategy, trials=trials, **kwargs)
        assert_usage_error(error, fragment)


def test_a_negative_seed_is_an_error() -> None:
    with pytest.raises(GridctlError) as error:
        expand(parse_args(["--x", "[1]"]), strategy="grid_search", trials=None, seed=-1)
    assert_usage_error(error, "--seed")


# ---------------------------------------------------------------------------------------------
# Misspelt sweep functions

MISSPELT = {
    "unifrom(0,1,3)": "uniform",
    "linespace(0, 1, 5)": "linspace",
    "randit(1, 10, 2)": "randint",
    "logunifrom(1e-5, 1e-1, 4)": "loguniform",
    "Uniform(0, 1, 3)": "uniform",
    "LINSPACE(0, 1, 5)": "linspace",
    "rnage(0, 5)": "range",
    "choise(['a', 'b'], 2)": "choice",
    "  normall(0, 1, 2)\n": "normal",
    "integer(0, 9, 2)": "integers",
    "standard_nromal(3)": "standard_normal",
}


@pytest.mark.parametrize(("value", "function"), list(MISSPELT.items()))
def test_a_misspelt_sweep_function_is_refused_with_a_suggestion(value: str, function: str) -> None:
    text = value.strip()
    for args in (["--lr", value], [f"--lr={value}"]):
        with pytest.raises(GridctlError) as error:
            parse_args([*args, "--epochs", "[1, 2]"])
        assert_usage_error(
            error,
            "--lr:",
            f'"{text}"',
            f"did you mean {function}?",
            f"[{text!r}]",
            "--strategy none",
        )


# Call-shaped values users pass on purpose: model, transform and optimizer names, builtins.
CALL_SHAPED_LITERALS = [
    "random_crop(224)",
    "RandomCrop(224)",
    "resnet(50)",
    "Adam(lr)",
    "max(1, 2)",
    "sum(x)",
    "print(1)",
    "Normalize(0.5, 0.5)",
    "ExponentialLR(0.9)",
    "Linear(512, 10)",
    "LayerNorm(512)",
    "lower(x)",
    "bert(base)",
    "uniformly(0, 1, 3)",
    "standardize(x)",
    "foo(1)",
]


@pytest.mark.parametrize("value", CALL_SHAPED_LITERALS)
def test_call_shaped_literals_not_close_to_a_sweep_function_pass_as_is(value: str) -> None:
    assert misspelt_function(value.partition("(")[0]) is None
    for args in (("--x", value), (f"--x={value}",)):
        assert [c.args for c in grid(*args)] == [args]


def test_values_merely_containing_a_misspelt_call_stay_literal() -> None:
    for value in ("unifrom", "unifrom(0, 1, 3) + 1", "x = unifrom(0, 1)", "numpy.unifrom(0, 1, 3)"):
        assert [c.args for c in grid("--x", value)] == [("--x", value)]


def test_a_one_element_list_passes_a_misspelt_call_as_is() -> None:
    (combination,) = grid("--lr", "['unifrom(0,1,3)']", '--mode=["Uniform(0, 1)"]')
    assert combination.params == {"lr": "unifrom(0,1,3)", "mode": "Uniform(0, 1)"}
    assert combination.args == ("--lr", "unifrom(0,1,3)", "--mode=Uniform(0, 1)")


def test_strategy_none_passes_a_misspelt_call_as_is() -> None:
    args = ("--lr", "unifrom(0,1,3)", "--n=rnage(3)")
    parsed = parse_args(args, strategy="none")
    (combination,) = expand(parsed, strategy="none", trials=None, seed=0).combinations
    assert combination == Combination(params={}, args=args)


SUGGESTIBLE = sorted({"range", *DISTRIBUTIONS, "choice", "linspace", "loguniform", "logspace"})


@st.composite
def typos(draw) -> tuple[str, str]:
    """A sweep function and the name with one typo after its first letter (a letter dropped,
    doubled or swapped with the next), in any case. Four-letter names (beta, wald, zipf) are
    left out: a swap in them falls below the cutoff."""
    name = draw(st.sampled_from([n for n in SUGGESTIBLE if len(n) >= 5]))
    i = draw(st.integers(1, len(name) - 2))
    typo = draw(
        st.sampled_from(
            [
                name[:i] + name[i + 1 :],
                name[:i] + name[i] + name[i:],
                name[:i] + name[i + 1] + name[i] + name[i + 2 :],
            ]
        )
    )
    upper = draw(st.lists(st.booleans(), min_size=len(typo), max_size=len(typo)))
    return name, "".join(c.upper() if u else c for c, u in zip(typo, upper, strict=True))


@settings(deadline=None)
@given(case=typos(), args=st.text(alphabet="0123456789., -'[]ab", max_size=20))
def test_one_typo_in_a_sweep_function_is_refused_naming_it(
    case: tuple[str, str], args: str
) -> None:
    name, typo = case
    assume(typo.lower() not in SWEEP_FUNCTIONS)
    value = f"{typo}({args})"
    with pytest.raises(GridctlError) as error:
        parse_args(["--x", value])
    assert_usage_error(error, "--x:", f"did you mean {name}?")


@settings(deadline=None)
@given(value=st.text())
def test_the_one_element_list_escape_passes_any_text_as_is(value: str) -> None:
    (combination,) = grid("--x", f"[{value!r}]")
    assert combination.params == {"x": value}
    assert combination.args == ("--x", value)


# ---------------------------------------------------------------------------------------------
# Nothing is ever evaluated


PAYLOADS = [
    "__import__('os').system('touch {p}')",
    "[__import__('os').system('touch {p}')]",
    "uniform(__import__('os').system('touch {p}'), 1, 2)",
    "range(len(open('{p}', 'w').name))",
    "normal(0, 1, len(open('{p}', 'w').name))",
    "[open('{p}', 'w')]",
    "choice([open('{p}', 'w')], 1)",
    "[(lambda: open('{p}', 'w'))()]",
    "(lambda: open('{p}', 'w'))()",
    "[f\"{{open('{p}', 'w')}}\"]",
    "[x for x in [open('{p}', 'w')]]",
    "[().__class__.__base__.__subclasses__()]",
    "[1][open('{p}', 'w').close() or 0]",
    "[1, 2] if open('{p}', 'w') else [3]",
    "[eval(\"open('{p}', 'w')\")]",
    "[*open('{p}', 'w')]",
    "range.__init__(open('{p}', 'w'))",
    "open('{p}', 'w')",
    "exec(\"open('{p}', 'w')\")",
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_parsing_never_evaluates(payload: str, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    sentinel = tmp_path / "pwned"
    value = payload.format(p=sentinel)

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("eval/exec called")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    for args in (["--x", value], [f"--x={value}"]):
        try:
            parsed = parse_args(args)
        except GridctlError:
            continue
        assert parsed.swept == () and parsed.args == tuple(args)
        expand(parsed, strategy="grid_search", trials=None, seed=0)
    assert not sentinel.exists()


# ---------------------------------------------------------------------------------------------
# Properties

SWEEPISH = st.one_of(
    st.text(),
    st.builds(
        "{}({}".format,
        st.sampled_from(sorted(SWEEP_FUNCTIONS)),
        st.text(alphabet="0123456789.,-+e []()'\"Truex_=*", max_size=30),
    ),
    st.builds("[{}".format, st.text(alphabet="0123456789.,-+e []()'\"TrueFalsx_", max_size=30)),
)


@settings(max_examples=300, deadline=None)
@given(value=SWEEPISH, inline=st.booleans())
def test_any_value_parses_or_is_a_clean_error(value: str, inline: bool) -> None:
    args = [f"--x={value}"] if inline else ["--x", value]
    try:
        parsed = parse_args(args)
        if experiment_count(parsed, strategy="grid_search", trials=None) <= 100:
            expand(parsed, strategy="grid_search", trials=None, seed=0)
    except GridctlError as error:
        assert len(error.message.splitlines()) == 1
        assert error.message.startswith("--x:")


SCALARS = st.one_of(
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
    st.booleans(),
)


@settings(deadline=None)
@given(values=st.lists(SCALARS, min_size=1, max_size=20), inline=st.booleans())
def test_a_list_expands_to_exactly_its_values(values: list[object], inline: bool) -> None:
    literal = "[" + ", ".join(map(repr, values)) + "]"
    args = [f"--x={literal}"] if inline else ["--x", literal]
    combinations = grid(*args)
    assert typed([c.params["x"] for c in combinations]) == typed(values)
    for combination, value in zip(combinations, values, strict=True):
        text = format_value(value)
        assert combination.args == ((f"--x={text}",) if inline else ("--x", text))
        if isinstance(value, float):
            assert float(text) == value


SWEEPS = st.one_of(
    st.lists(st.integers(-5, 5), min_size=1, max_size=4).map(repr),
    st.tuples(st.integers(-5, 5), st.integers(1, 4), st.integers(1, 3)).map(
        lambda t: f"range({t[0]}, {t[0] + t[1] * t[2]}, {t[2]})"
    ),
    st.integers(1, 4).map("uniform(0, 1, {})".format),
    st.integers(1, 4).map("linspace(0, 1, {})".format),
    st.integers(1, 4).map("choice(['a', 'b'], {})".format),
    st.just("7"),
)


@settings(deadline=None)
@given(
    sweeps=st.lists(SWEEPS, min_size=0, max_size=4),
    trials=st.integers(1, 300),
    seed=st.integers(0, 2**32),
)
def test_counts_match_expansions_and_random_picks_come_from_the_grid(
    sweeps: list[str], trials: int, seed: int
) -> None:
    args = [token for i, sweep in enumerate(sweeps) for token in (f"--f{i}", sweep)]
    parsed = parse_args(args)
    total = parsed.combinations()
    assert total == math.prod(flag.count for flag in parsed.swept)
    full = expand(parsed, strategy="grid_search", trials=None, seed=seed).combinations
    assert experiment_count(parsed, strategy="grid_search", trials=None) == len(full) == total
    picked = expand(parsed, strategy="random_search", trials=trials, seed=seed).combinations
    assert experiment_count(parsed, strategy="random_search", trials=trials) == len(picked)
    assert len(picked) == min(trials, total)
    remaining = iter(full)
    assert all(any(p == c for c in remaining) for p in picked), "not an ordered subset"
