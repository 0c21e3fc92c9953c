"""Sweep expansion: flag values such as "[1, 2]" or "uniform(0, 1, 3)" become one experiment each.

Values are parsed with ``ast`` against a whitelist and never evaluated. numpy is imported only
where something is sampled, so that importing the CLI (and ``gridctl --help``) stays fast.
"""

from __future__ import annotations

import ast
import difflib
import math
import random
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gridctl.cli.errors import GridctlError

if TYPE_CHECKING:
    from numpy.random import Generator

STRATEGIES = ("grid_search", "random_search", "none")
MAX_EXPERIMENTS = 10_000
CONFIRM_ABOVE = 100

# Scalar distributions of numpy.random.Generator: name -> its parameters, in order, before the
# count. Static so that parsing does not import numpy; tests keep it in step with numpy.
# All parameters are required: otherwise "uniform(0, 1)" would silently mean uniform(0, size=1).
DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "beta": ("a", "b"),
    "binomial": ("n", "p"),
    "chisquare": ("df",),
    "exponential": ("scale",),
    "f": ("dfnum", "dfden"),
    "gamma": ("shape", "scale"),
    "geometric": ("p",),
    "gumbel": ("loc", "scale"),
    "hypergeometric": ("ngood", "nbad", "nsample"),
    "integers": ("low", "high"),
    "laplace": ("loc", "scale"),
    "logistic": ("loc", "scale"),
    "lognormal": ("mean", "sigma"),
    "logseries": ("p",),
    "negative_binomial": ("n", "p"),
    "noncentral_chisquare": ("df", "nonc"),
    "noncentral_f": ("dfnum", "dfden", "nonc"),
    "normal": ("loc", "scale"),
    "pareto": ("a",),
    "poisson": ("lam",),
    "power": ("a",),
    "randint": ("low", "high"),
    "random": (),
    "rayleigh": ("scale",),
    "standard_cauchy": (),
    "standard_exponential": (),
    "standard_gamma": ("shape",),
    "standard_normal": (),
    "standard_t": ("df",),
    "triangular": ("left", "mode", "right"),
    "uniform": ("low", "high"),
    "vonmises": ("mu", "kappa"),
    "wald": ("mean", "scale"),
    "weibull": ("a",),
    "zipf": ("a",),
}

# Sweep functions of gridctl's own, with the same "count last" convention.
EXTRA_FUNCTIONS: dict[str, tuple[str, ...]] = {
    "choice": ("options",),
    "linspace": ("start", "stop"),
    "loguniform": ("low", "high"),
    "logspace": ("start", "stop"),
}

# The rest of numpy.random.Generator: recognised, so a value using them is an error, not a literal.
REFUSED: dict[str, str] = {
    "bit_generator": "is not a distribution",
    "bytes": "is not a distribution",
    "dirichlet": "draws vectors, not single values",
    "multinomial": "draws vectors, not single values",
    "multivariate_hypergeometric": "draws vectors, not single values",
    "multivariate_normal": "draws vectors, not single values",
    "permutation": "is not a distribution",
    "permuted": "is not a distribution",
    "shuffle": "is not a distribution",
    "spawn": "is not a distribution",
}

SWEEP_FUNCTIONS = frozenset({"range", *DISTRIBUTIONS, *EXTRA_FUNCTIONS, *REFUSED})

_PARAMETERS = {**DISTRIBUTIONS, **EXTRA_FUNCTIONS}

# What a misspelt sweep function may have meant: the ones that sweep (not the refused ones).
_SUGGESTIBLE = ("range", *_PARAMETERS)
# A typo changes, swaps, adds or drops a letter: close by difflib's ratio, at most one letter
# longer or shorter, and the same first letter. The last two keep call-shaped literals that
# merely resemble a function (Normalize(0.5), ExponentialLR(0.9), lower(x)) literal.
_TYPO_RATIO = 0.8

_NUMPY_METHOD = {"randint": "integers"}
_CALL_START = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\(", re.ASCII)
_CALL_SHAPE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\(.*\)", re.ASCII | re.DOTALL)
# Integers print in decimal; Python refuses to convert ones with more than 4300 digits.
_INT_LIMIT = 10**1000
_SHOWN_CHARS = 60

Scalar = int | float | str | bool


@dataclass(frozen=True)
class ListSweep:
    """The values written out in a list literal."""

    values: tuple[Scalar, ...]

    @property
    def count(self) -> int:
        return len(self.values)


@dataclass(frozen=True)
class RangeSweep:
    """``range(start, stop, step)``, never materialised: random search may pick from a huge one."""

    start: int
    stop: int
    step: int

    @property
    def count(self) -> int:
        # len(range(...)) overflows above sys.maxsize; the arithmetic does not.
        span = self.stop - self.start if self.step > 0 else self.start - self.stop
        return max(0, -(-span // abs(self.step)))


@dataclass(frozen=True)
class Sample:
    """``count`` values drawn by ``function`` from the expansion's Generator (or evenly spaced)."""

    function: str
    args: tuple[object, ...]  # numeric parameters; for choice, the options tuple
    count: int


Spec = ListSweep | RangeSweep | Sample


@dataclass(frozen=True)
class SweptFlag:
    """A swept flag; ``index`` is the argument holding its value (the flag itself for ``--f=v``)."""

    flag: str
    index: int
    spec: Spec
    count: int


@dataclass(frozen=True)
class ParsedArgs:
    """Script arguments and the sweeps found in them, before anything is sampled."""

    args: tuple[str, ...]
    swept: tuple[SweptFlag, ...]

    def combinations(self) -> int:
        """Size of the grid, exactly, so that a huge sweep is refused before it is expanded."""
        return math.prod(flag.count for flag in self.swept)


@dataclass(frozen=True)
class Combination:
    """One experiment: the swept values and the script arguments carrying them."""

    params: dict[str, object]
    args: tuple[str, ...]


@dataclass(frozen=True)
class Expansion:
    """The experiments of a run, with the seed that reproduces them."""

    combinations: tuple[Combination, ...]
    seed: int
    warnings: tuple[str, ...]


def parse_args(
    args: Sequence[str], *, strategy: str = "grid_search", dashes_to_underscores: bool = False
) -> ParsedArgs:
    """Find the swept flags in the script arguments; everything else passes through untouched."""
    _check_strategy(strategy)
    tokens = list(args)
    swept: list[SweptFlag] = []
    i = 0
    while i < len(tokens) and tokens[i] != "--":
        token = tokens[i]
        if not _is_flag(token):
            i += 1
            continue
        head, eq, value = token.partition("=")
        if dashes_to_underscores:
            head = _underscored(head)
            tokens[i] = head + eq + value
        index = i
        if not eq:
            if i + 1 == len(tokens) or _is_flag(tokens[i + 1]) or tokens[i + 1] == "--":
                i += 1
                continue
            index = i + 1
            value = tokens[index]
        spec = None if strategy == "none" else _parse_value(head, value)
        if spec is not None:
            name = head.lstrip("-")
            if any(flag.flag == name for flag in swept):
                raise GridctlError(_one_line(f"{head}: swept more than once"))
            swept.append(SweptFlag(flag=name, index=index, spec=spec, count=spec.count))
        i = index + 1
    return ParsedArgs(args=tuple(tokens), swept=tuple(swept))


def experiment_count(parsed: ParsedArgs, *, strategy: str, trials: int | None) -> int:
    """How many experiments ``expand`` would make, without sampling or materialising any."""
    _check_strategy(strategy)
    if trials is not None and strategy != "random_search":
        raise GridctlError(f"--trials only applies to --strategy random_search, not {strategy}")
    if strategy == "none":
        return 1
    if strategy == "grid_search":
        return parsed.combinations()
    if trials is None:
        raise GridctlError("--strategy random_search needs --trials N")
    if trials <= 0:
        raise GridctlError(f"--trials must be a positive integer, got {trials}")
    return min(trials, parsed.combinations())


def check_limit(count: int) -> None:
    """Refuse a sweep above MAX_EXPERIMENTS before anything is sampled or started."""
    if count > MAX_EXPERIMENTS:
        raise GridctlError(
            f"the sweep makes {_describe(count)} experiments, above the limit of "
            f"{MAX_EXPERIMENTS:,}; narrow it or use --strategy random_search with fewer --trials"
        )


def expand(parsed: ParsedArgs, *, strategy: str, trials: int | None, seed: int) -> Expansion:
    """The experiments, in order; the same seed gives the same samples and the same picks."""
    count = experiment_count(parsed, strategy=strategy, trials=trials)
    check_limit(count)
    if seed < 0:
        raise GridctlError(f"--seed must be a non-negative integer, got {seed}")
    if strategy == "none":
        return Expansion(combinations=(Combination({}, parsed.args),), seed=seed, warnings=())
    total = parsed.combinations()
    notes: tuple[str, ...] = ()
    picks: Sequence[int] = range(total)
    if strategy == "random_search":
        picks = _pick(total, count, seed)
        if trials is not None and trials > total:
            notes = (
                f"--trials {trials} is more than the {total} combinations; running all of them",
            )
    values = _values(parsed, seed)
    combinations = tuple(_combination(parsed, values, index) for index in picks)
    return Expansion(combinations=combinations, seed=seed, warnings=notes)


def _pick(total: int, k: int, seed: int) -> list[int]:
    """k distinct indices below total, uniformly, ascending; total may exceed sys.maxsize.

    Floyd's algorithm: random.sample(range(total), k) would be the obvious call, but it takes
    len(range), which overflows for the huge grids that ranges can make.
    """
    rng = random.Random(seed)
    picked: set[int] = set()
    for top in range(total - k, total):
        candidate = rng.randrange(top + 1)
        picked.add(top if candidate in picked else candidate)
    return sorted(picked)


def format_value(value: object) -> str:
    """A value as the script receives it: shortest round-trip floats, strings without quotes."""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (bool, int, str)):
        return str(value)
    raise TypeError(f"cannot format {type(value).__name__} as a script argument")


def _check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise GridctlError(
            _one_line(
                f"--strategy: unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}"
            )
        )


def _is_flag(token: str) -> bool:
    """``-x``/``--name[=v]``, but not ``-``, ``--`` or a negative number such as ``-0.1``."""
    if not token.startswith("-") or not token.lstrip("-").partition("=")[0]:
        return False
    try:
        float(token)
    except ValueError:
        return True
    return False


def _underscored(head: str) -> str:
    name = head.lstrip("-")
    return head[: len(head) - len(name)] + name.replace("-", "_")


def _parse_value(label: str, value: str) -> Spec | None:
    """The sweep a value clearly means, None for a literal; a broken sweep is an error."""
    text = value.strip()
    call = _CALL_START.match(text)
    if text.startswith("["):
        kind = "list"
    elif call and call.group(1) in SWEEP_FUNCTIONS:
        kind = call.group(1)
    else:
        _refuse_misspelt_function(label, text)
        return None
    try:
        node = _parse_expression(text)
        return ListSweep(_list_values(node, text)) if kind == "list" else _call(node, text, kind)
    except GridctlError as exc:
        problem = f"is not a valid {kind} sweep ({exc.message})"
        raise GridctlError(_one_line(f"{label}: {_shown(text)} {problem}")) from None


def misspelt_function(name: str) -> str | None:
    """The sweep function ``name`` looks like a typo of, compared case-insensitively."""
    typed = name.lower()
    for function in difflib.get_close_matches(typed, _SUGGESTIBLE, n=3, cutoff=_TYPO_RATIO):
        if abs(len(function) - len(typed)) <= 1 and function[0] == typed[0]:
            return function
    return None


def _refuse_misspelt_function(label: str, text: str) -> None:
    """A whole value such as "unifrom(0, 1, 3)" is a sweep gone wrong, not a literal."""
    shape = _CALL_SHAPE.fullmatch(text)
    function = misspelt_function(shape.group(1)) if shape else None
    if shape is None or function is None:
        return
    problem = f"{shape.group(1)} is not a sweep function; did you mean {function}?"
    escape = f'to pass it as is, make it a one-element list, "[{text!r}]", or use --strategy none'
    raise GridctlError(_one_line(f"{label}: {_shown(text)}: {problem} ({escape})"))


def _parse_expression(text: str) -> ast.expr:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. SyntaxWarning for "\d" inside a string
        try:
            return ast.parse(text, mode="eval").body
        except SyntaxError as exc:
            raise GridctlError(exc.msg) from None
        except (ValueError, RecursionError, MemoryError) as exc:
            raise GridctlError(str(exc) or "too deeply nested to parse") from None


def _list_values(node: ast.expr, text: str) -> tuple[Scalar, ...]:
    if not isinstance(node, ast.List):
        raise GridctlError("expected only a list literal such as [1, 2]")
    if not node.elts:
        raise GridctlError("the list is empty")
    values = []
    for element in node.elts:
        source = ast.get_source_segment(text, element)
        if isinstance(element, (ast.List, ast.Tuple, ast.Set, ast.Dict)):
            raise GridctlError(f"{source} is nested; lists hold only single values")
        value = _literal(element, text)
        if value is None:
            raise GridctlError(f"{source} is not a number, string or boolean literal")
        values.append(value)
    return tuple(values)


def _number(node: ast.expr, text: str) -> int | float:
    value = _literal(node, text)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise GridctlError(f"{ast.get_source_segment(text, node)} is not a number literal")
    return value


def _integer(node: ast.expr, text: str, what: str) -> int:
    value = _literal(node, text)
    if not isinstance(value, int) or isinstance(value, bool):
        source = ast.get_source_segment(text, node)
        raise GridctlError(f"{what} must be an integer literal, got {source}")
    return value


def _literal(node: ast.expr, text: str) -> Scalar | None:
    """The value of a string, boolean or (signed) number literal; None for anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (bool, str)):
        return node.value
    sign = 1
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        sign = -1 if isinstance(node.op, ast.USub) else 1
        node = node.operand
    if not isinstance(node, ast.Constant) or type(node.value) not in (int, float):
        return None
    number: int | float = node.value  # type: ignore[assignment]  # int or float, checked above
    value = sign * number
    source = ast.get_source_segment(text, node)
    if isinstance(value, float) and not math.isfinite(value):
        raise GridctlError(f"{source} is not a finite number")
    if isinstance(value, int) and abs(value) >= _INT_LIMIT:
        raise GridctlError(f"{source} has more than 1000 digits")
    return value


def _call(node: ast.expr, text: str, name: str) -> Spec:
    if not (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name
    ):
        raise GridctlError(f"expected only a call such as {name}(...)")
    if name in REFUSED:
        raise GridctlError(f"numpy's {name} {REFUSED[name]}")
    if node.keywords:
        raise GridctlError("keyword arguments are not supported; pass values in order, count last")
    if name == "range":
        return _range(node.args, text)
    params = (*_PARAMETERS[name], "count")
    if len(node.args) != len(params):
        raise GridctlError(
            f"expected {name}({', '.join(params)}), got {_arguments(len(node.args))}"
        )
    *arg_nodes, count_node = node.args
    count = _integer(count_node, text, "the count")
    if count <= 0:
        raise GridctlError(f"the count must be positive, got {count}")
    if count > MAX_EXPERIMENTS:
        raise GridctlError(f"the count {count} is above the limit of {MAX_EXPERIMENTS:,} values")
    if name == "choice":
        return Sample(name, (_list_values(arg_nodes[0], text),), count)
    args = tuple(_number(arg, text) for arg in arg_nodes)
    if name == "loguniform" and min(args) <= 0:
        raise GridctlError("low and high must be positive")
    return Sample(name, args, count)


def _range(nodes: list[ast.expr], text: str) -> RangeSweep:
    if not 1 <= len(nodes) <= 3:
        raise GridctlError(f"expected range(start, stop[, step]), got {_arguments(len(nodes))}")
    values = [_integer(arg, text, "each range argument") for arg in nodes]
    start, stop, step = (0, values[0], 1) if len(values) == 1 else (*values, 1)[:3]
    if step == 0:
        raise GridctlError("the step must not be zero")
    sweep = RangeSweep(start, stop, step)
    if sweep.count == 0:
        raise GridctlError("the range is empty")
    return sweep


def _values(parsed: ParsedArgs, seed: int) -> list[Sequence[Scalar]]:
    """Each swept flag's values, sampling in flag order from one Generator seeded with ``seed``."""
    rng: Generator | None = None
    if any(isinstance(flag.spec, Sample) for flag in parsed.swept):
        import numpy

        rng = numpy.random.default_rng(seed)
    values: list[Sequence[Scalar]] = []
    for flag in parsed.swept:
        spec = flag.spec
        if isinstance(spec, ListSweep):
            values.append(spec.values)
        elif isinstance(spec, RangeSweep):
            values.append(range(spec.start, spec.stop, spec.step))
        else:
            assert rng is not None
            values.append(_sample(parsed, flag, spec, rng))
    return values


def _sample(parsed: ParsedArgs, flag: SweptFlag, spec: Sample, rng: Generator) -> list[Scalar]:
    import numpy

    name, count = spec.function, spec.count
    args: Any = spec.args  # checked by the grammar: numbers, or choice's options
    try:
        with numpy.errstate(all="ignore"):  # overflow shows up as a non-finite value, refused below
            if name == "choice":
                options = args[0]
                return [options[i] for i in rng.choice(len(options), count).tolist()]
            if name == "linspace":
                drawn = numpy.linspace(args[0], args[1], count)
            elif name == "logspace":
                drawn = numpy.logspace(args[0], args[1], count)
            elif name == "loguniform":
                drawn = numpy.exp(rng.uniform(numpy.log(args[0]), numpy.log(args[1]), count))
            else:
                drawn = getattr(rng, _NUMPY_METHOD.get(name, name))(*args, size=count)
    except (ValueError, OverflowError, TypeError) as exc:
        raise _sample_error(parsed, flag, f"cannot be sampled: {exc}") from None
    values = drawn.tolist()
    if not all(math.isfinite(value) for value in values):
        raise _sample_error(parsed, flag, "gives values that are not finite")
    return values


def _sample_error(parsed: ParsedArgs, flag: SweptFlag, problem: str) -> GridctlError:
    """Names the flag as the user wrote it (``-x``, ``--lr``) and the sweep that failed."""
    token = parsed.args[flag.index]
    if _is_flag(token):
        label, _, value = token.partition("=")
    else:
        label, value = parsed.args[flag.index - 1], token
    return GridctlError(_one_line(f"{label}: {_shown(value.strip())} {problem}"))


def _combination(parsed: ParsedArgs, values: list[Sequence[Scalar]], index: int) -> Combination:
    """The combination at ``index`` of the grid, first swept flag varying slowest."""
    positions = []
    for flag in reversed(parsed.swept):
        index, position = divmod(index, flag.count)
        positions.append(position)
    args = list(parsed.args)
    params: dict[str, object] = {}
    for flag, flag_values, position in zip(parsed.swept, values, reversed(positions), strict=True):
        value = flag_values[position]
        params[flag.flag] = value
        token = args[flag.index]
        text = format_value(value)
        args[flag.index] = f"{token.partition('=')[0]}={text}" if _is_flag(token) else text
    return Combination(params=params, args=tuple(args))


def _arguments(n: int) -> str:
    return f"{n} argument" if n == 1 else f"{n} arguments"


def _describe(count: int) -> str:
    return f"{count:,}" if count < 10**100 else "more than 10^100"


def _shown(value: str) -> str:
    """A sweep quoted for an error message, cut short so a long list stays readable."""
    if len(value) > _SHOWN_CHARS:
        value = value[: _SHOWN_CHARS - 3] + "..."
    return f'"{value}"'


def _one_line(message: str) -> str:
    """Errors print as one line, whatever characters the user's values hold."""
    return "".join(
        char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
        for char in message
    )
