"""Which experiments share an instance on AWS: Grid's rule, packed by the node's scheduler."""

import dataclasses
import re
from pathlib import Path

from gridctl.cli.backends.aws import machines_for
from gridctl.cli.machines import resolve_instance_type
from gridctl.cli.plan import PlannedExperiment, Resources, RunPlan


def plan(instance_type: str, count: int, *, gpus: int, cpus: float = 1.0) -> RunPlan:
    experiments = tuple(
        PlannedExperiment(f"r-exp{i}", i, {}, ("python", "t.py")) for i in range(count)
    )
    return RunPlan(
        name="r",
        cloud="aws",
        description=None,
        localdir=Path("."),
        script="t.py",
        strategy="grid_search",
        seed=0,
        resources=Resources(cpus, gpus, 0),
        experiments=experiments,
        instance_type=resolve_instance_type(instance_type),
    )


def layout(p: RunPlan) -> list[tuple[str, tuple[str, ...]]]:
    return [(m.name, m.experiments) for m in machines_for(p)]


def test_fewer_gpus_than_the_type_has_share_machines_named_after_the_run():
    assert layout(plan("4_t4_16gb", 5, gpus=2)) == [
        ("r-machine0", ("r-exp0", "r-exp1")),
        ("r-machine1", ("r-exp2", "r-exp3")),
        ("r-exp4", ("r-exp4",)),
    ]


def test_a_machine_carries_its_instance_types_capacity():
    (machine,) = machines_for(plan("g4dn.12xlarge", 4, gpus=1))
    assert machine.experiments == ("r-exp0", "r-exp1", "r-exp2", "r-exp3")
    assert (machine.cpus, machine.gpus, machine.memory) == (48.0, 4, 192 << 30)


def test_a_machine_says_whether_its_nodes_are_spot_instances():
    """Its nodes charge the spot price history's figure, or the on-demand price."""
    on_demand = plan("g4dn.xlarge", 2, gpus=1)
    assert {m.spot for m in machines_for(on_demand)} == {False}
    spot = dataclasses.replace(on_demand, use_spot=True)
    assert {m.spot for m in machines_for(spot)} == {True}


def test_cpus_limit_sharing_too():
    assert layout(plan("4_t4_16gb", 2, gpus=1, cpus=30)) == [
        ("r-exp0", ("r-exp0",)),
        ("r-exp1", ("r-exp1",)),
    ]


def test_all_gpus_or_none_means_one_experiment_per_machine():
    for p in (
        plan("4_t4_16gb", 2, gpus=4),
        plan("4_t4_16gb", 2, gpus=0),
        plan("m5.2xlarge", 2, gpus=0),
    ):
        assert layout(p) == [("r-exp0", ("r-exp0",)), ("r-exp1", ("r-exp1",))]


def test_group_names_are_scoped_by_environment_and_fit_aws_limits():
    from gridctl.cli.backends.aws import group_name

    assert group_name("team-a", "r-exp0") != group_name("team-b", "r-exp0")
    # The longest: a 24-character environment, a 40-character run, a machine index of 4.
    longest = group_name("e" * 24, "r" * 40 + "-machine9999")
    assert re.fullmatch(r"[A-Za-z0-9._-]{1,128}", longest)  # the module's name validation


def gang(instance_type: str, count: int, *, nodes: int, gpus: int) -> RunPlan:
    return dataclasses.replace(plan(instance_type, count, gpus=gpus), nodes=nodes)


def test_a_multi_node_experiment_has_a_machine_of_its_own_with_its_nodes():
    """Even when each node asks for fewer GPUs than the type has: a gang is never packed."""
    for p in (
        gang("4_t4_16gb", 3, nodes=2, gpus=1),
        gang("4_t4_16gb", 3, nodes=2, gpus=4),
        gang("m5.large", 3, nodes=2, gpus=0),
    ):
        machines = machines_for(p)
        assert [(m.name, m.experiments, m.nodes) for m in machines] == [
            (f"r-exp{i}", (f"r-exp{i}",), 2) for i in range(3)
        ]


def test_a_single_node_machine_says_one_node():
    assert {m.nodes for m in machines_for(plan("4_t4_16gb", 5, gpus=2))} == {1}


def test_the_spec_of_a_multi_node_experiment_carries_its_nodes_and_framework():
    p = dataclasses.replace(gang("4_t4_16gb", 1, nodes=3, gpus=2), framework="torch")
    spec = p.spec(p.experiments[0], "bundles/x.tar.gz", {})
    assert (spec.nodes, spec.framework, spec.gpus) == (3, "torch", 2)
