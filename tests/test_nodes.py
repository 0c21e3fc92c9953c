"""How many nodes an experiment spans (SPEC section 9): ``--nodes K``, or Grid's rule that
derives K from ``--gpus`` over the instance type's GPUs; every refusal names counts that
work, and those counts are checked to work."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridctl.cli.errors import GridctlError
from gridctl.cli.machines import INSTANCE_TYPES, InstanceType, resolve_instance_type
from gridctl.cli.nodes import MAX_NODES, Shape, shape

V100X4 = resolve_instance_type("4_v100_16gb")
GPU_TYPES = sorted({t.gpus: t for t in INSTANCE_TYPES.values() if t.gpus}.values(), key=str)
TYPES = st.one_of(st.none(), st.sampled_from([*GPU_TYPES, resolve_instance_type("m5.large")]))
NODES = st.one_of(st.none(), st.integers(-2, 80), st.sampled_from([0, 1, MAX_NODES, MAX_NODES + 1]))


@st.composite
def requests(draw, nodes=NODES):
    """``(gpus, nodes, type)``: any counts, and often GPUs that nearly divide into the
    node count (given or drawn) times the type's GPUs, where the rule's edges lie."""
    itype = draw(TYPES)
    given_nodes = draw(nodes)
    k = given_nodes if given_nodes and given_nodes > 0 else draw(st.integers(1, 70))
    g = itype.gpus if itype is not None else draw(st.integers(1, 8))
    each = draw(st.sampled_from([0, 1, g - 1, g, g + 1, 2 * g]))
    near = max(k * each + draw(st.sampled_from([0, 0, 1, -1])), 0)
    return draw(st.one_of(st.integers(0, 600), st.just(near))), given_nodes, itype


def refusal(gpus: int, nodes: int | None, itype: InstanceType | None) -> str:
    with pytest.raises(GridctlError) as refused:
        shape(gpus, nodes, itype)
    assert refused.value.exit_code == 2
    assert "\n" not in refused.value.message
    return refused.value.message


def suggested(message: str, flag: str) -> list[int]:
    return [int(n) for n in re.findall(rf"{flag} (\d+)", message.partition(": use ")[2])]


@pytest.mark.parametrize(
    ("gpus", "nodes", "itype", "expected"),
    [
        (0, None, None, Shape(1, 0)),
        (3, None, None, Shape(1, 3)),
        (4, None, V100X4, Shape(1, 4)),
        (2, None, V100X4, Shape(1, 2)),
        (8, None, V100X4, Shape(2, 4)),
        (20, None, V100X4, Shape(5, 4)),
        (0, 2, None, Shape(2, 0)),
        (8, 2, V100X4, Shape(2, 4)),
        (8, 4, V100X4, Shape(4, 2)),
        (6, 3, None, Shape(3, 2)),
        (4, None, resolve_instance_type("m5.large"), Shape(1, 4)),
    ],
)
def test_the_node_count_and_each_nodes_gpus(gpus, nodes, itype, expected):
    assert shape(gpus, nodes, itype) == expected


def test_the_derived_rule_names_the_two_nearest_gpu_counts():
    with pytest.raises(GridctlError) as refused:
        shape(6, None, V100X4, "4_v100_16gb")
    assert refused.value.message == (
        "--gpus 6 does not divide into nodes of 4 GPUs (4_v100_16gb has 4):"
        " use --gpus 4 or --gpus 8"
    )


@pytest.mark.parametrize(
    ("gpus", "nodes", "itype", "message"),
    [
        (3, 2, None, "--gpus 3 does not divide over --nodes 2: use --gpus 2 or --gpus 4"),
        (1, 4, None, "--gpus 1 does not divide over --nodes 4: use --gpus 4"),
        (
            8,
            1,
            V100X4,
            "--gpus 8 over --nodes 1 needs 8 GPUs per node, more than p3.8xlarge has (4):"
            " use --nodes 2",
        ),
        (
            24,
            3,
            V100X4,
            "--gpus 24 over --nodes 3 needs 8 GPUs per node, more than p3.8xlarge has (4):"
            " use --nodes 6",
        ),
        (
            5,
            2,
            resolve_instance_type("2_m60_8gb"),
            "--gpus 5 over --nodes 2 needs 3 GPUs per node, more than g3.8xlarge has (2):"
            " use --nodes 5",
        ),
        (
            2,
            2,
            resolve_instance_type("m5.large"),
            "--gpus 2: m5.large has no GPUs: name a GPU type with --instance_type, or leave"
            " --gpus out for nodes of CPUs only",
        ),
        (0, 0, None, "--nodes 0: an experiment runs on at least 1 node"),
        (0, -3, None, "--nodes -3: an experiment runs on at least 1 node"),
        (0, MAX_NODES + 1, None, f"--nodes {MAX_NODES + 1}: an experiment runs on at most 64"),
        (
            4 * 65,
            None,
            V100X4,
            "--gpus 260 on p3.8xlarge (4 GPUs each) needs 65 nodes; an experiment runs on at"
            " most 64: use --gpus 256 or less",
        ),
    ],
)
def test_counts_that_do_not_work_are_refused_in_one_line(gpus, nodes, itype, message):
    assert refusal(gpus, nodes, itype).startswith(message)


@settings(max_examples=600)
@given(request=requests())
def test_a_shape_splits_the_gpus_evenly_within_the_type_and_the_limit(request):
    gpus, nodes, itype = request
    try:
        found = shape(gpus, nodes, itype)
    except GridctlError:
        return
    assert found.nodes * found.gpus_per_node == gpus
    assert 1 <= found.nodes <= MAX_NODES
    if nodes is not None:
        assert found.nodes == nodes
    if itype is not None and itype.gpus:
        assert found.gpus_per_node <= itype.gpus
    if itype is None or nodes is None and gpus <= itype.gpus:
        assert found == Shape(nodes or 1, gpus // (nodes or 1))


@settings(max_examples=600)
@given(request=requests(nodes=st.one_of(st.none(), st.integers(1, MAX_NODES))))
def test_every_count_a_refusal_suggests_works_and_none_nearer_does(request):
    gpus, nodes, itype = request
    try:
        shape(gpus, nodes, itype)
    except GridctlError as refused:
        message = refused.message
    else:
        return
    if not suggested(message, "--gpus") + suggested(message, "--nodes"):
        assert not any(_works(gpus, k, itype) for k in range(1, MAX_NODES + 1)), message
    for other in suggested(message, "--gpus"):
        assert shape(other, nodes, itype).nodes >= 1, message
    for other in suggested(message, "--nodes"):
        assert shape(gpus, other, itype).nodes == other, message
        fewer = [k for k in range(1, other) if _works(gpus, k, itype)]
        assert not fewer, (message, fewer)
    options = suggested(message, "--gpus")
    if len(options) == 2:
        low, high = options
        assert low < gpus < high
        assert not any(_works(n, nodes, itype) for n in range(low + 1, high)), message


def _works(gpus: int, nodes: int | None, itype: InstanceType | None) -> bool:
    try:
        shape(gpus, nodes, itype)
    except GridctlError:
        return False
    return True


def test_a_plan_gives_each_node_its_share_of_the_gpus(tmp_path):
    from gridctl.cli.options import RunOptions
    from gridctl.cli.plan import plan_run

    (tmp_path / "train.py").write_text("print('hi')\n")
    flags = {"cloud": "aws", "localdir": tmp_path, "instance_type": "4_t4_16gb", "gpus": 8}
    for nodes, each in ((None, 4), (2, 4), (4, 2), (8, 1)):
        options = RunOptions("train.py", flags={**flags, "nodes": nodes, "framework": "torch"})
        plan = plan_run(options, default_cloud="local", run_exists=lambda _: False, confirm=any)
        spec = plan.spec(plan.experiments[0], "bundles/b.tar.gz", {})
        assert (plan.nodes, plan.resources.gpus) == (8 // each, each)
        assert (spec.nodes, spec.gpus, spec.framework) == (8 // each, each, "torch")


@pytest.mark.parametrize(
    ("nodes", "gpus", "refused"),
    [
        (1, 4, None),
        (2, 4, None),
        (4, 4, None),
        (2, 8, "--gpus 8: this machine has 4 GPU(s) (use --cloud aws)"),
        (8, 8, "--gpus 8: this machine has 4 GPU(s) (use --cloud aws)"),
    ],
)
def test_a_local_gangs_nodes_must_fit_this_machine_together(
    tmp_path, monkeypatch, nodes, gpus, refused
):
    """A GPU machine stands in for this one, which has none: the hardware is the boundary."""
    from gridctl.agent.core.resources import Capacity
    from gridctl.cli.backends import local
    from gridctl.cli.options import RunOptions
    from gridctl.cli.plan import plan_run

    monkeypatch.setattr(local, "machine_capacity", lambda: Capacity(16.0, 4, 64 << 30))
    (tmp_path / "train.py").write_text("print('hi')\n")
    flags = {"cloud": "local", "localdir": tmp_path, "gpus": gpus, "nodes": nodes}
    plan = plan_run(
        RunOptions("train.py", flags=flags),
        default_cloud="local",
        run_exists=lambda _: False,
        confirm=any,
    )
    backend = local.LocalBackend(tmp_path / "home")
    if refused is None:
        assert backend.check_plan(plan) == []
        return
    with pytest.raises(GridctlError) as error:
        backend.check_plan(plan)
    assert error.value.message == refused
