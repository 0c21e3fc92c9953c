"""The suite's own order under xdist (schedule.py): pure, so property-tested."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from schedule import slices, spread


def test_slices_are_worksteals():
    assert slices(10, 4) == [2, 2, 3, 3]
    assert slices(3, 4) == [0, 1, 1, 1]


@given(
    st.lists(st.tuples(st.sampled_from([0.1, 2.0, 10.0]), st.sampled_from("abcde")), max_size=80),
    st.integers(1, 6),
)
def test_each_slice_starts_heavy_keeps_groups_together_and_shares_the_weight(tests, workers):
    items = list(range(len(tests)))
    weights = [w for w, _ in tests]
    groups = [g for _, g in tests]
    order = spread(items, weights, groups, workers)
    assert sorted(order) == items
    if workers < 2 or len(items) < workers:
        assert order == items
        return
    start, loads = 0, []
    for size in slices(len(items), workers):
        share = order[start : start + size]
        start += size
        named = [groups[i] for i in share]
        runs = [g for n, g in enumerate(named) if n == 0 or named[n - 1] != g]
        assert len(runs) == len(set(runs))  # each group in one stretch
        firsts = [max(weights[i] for i in share if groups[i] == g) for g in runs]
        assert firsts == sorted(firsts, reverse=True)  # the heaviest stretches first
        loads.append(sum(weights[i] for i in share))
    assert max(loads) - min(loads) <= max(weights) * 2
