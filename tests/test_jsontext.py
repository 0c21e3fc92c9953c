"""The fast JSON writer writes exactly what ``json.dumps(indent=2)`` writes."""

from __future__ import annotations

import enum
import json

from hypothesis import given
from hypothesis import strategies as st

from gridctl.cli import jsontext


class Colour(str, enum.Enum):
    red = "red"


class Count(enum.IntEnum):
    one = 1


_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
    | st.sampled_from([Colour.red, Count.one])
)
_values = st.recursive(
    _leaves,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(), inner, max_size=4)
    ),
    max_leaves=30,
)


@given(_values)
def test_the_text_is_json_dumps_with_an_indent_of_two(value):
    assert jsontext.dumps(value) == json.dumps(value, indent=2)


def test_what_it_does_not_write_itself_json_dumps_does():
    odd = {"a": {1: [2.5, None]}, "b": {True: "x"}}
    assert jsontext.dumps(odd) == json.dumps(odd, indent=2)
