"""Instance catalogue, Grid nicknames, fit checks and memory sizes."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridctl.agent.core.units import format_bytes
from gridctl.cli.errors import EXIT_USAGE, GridctlError
from gridctl.cli.machines import (
    INSTANCE_TYPES,
    NICKNAMES,
    check_fits,
    parse_memory,
    pick_instance_type,
    resolve_instance_type,
)

GIB = 2**30

# Nicknames Grid users already type, and what they must keep meaning.
GRID_NICKNAMES = {
    "1_k80_12gb": "p2.xlarge",
    "8_k80_12gb": "p2.8xlarge",
    "16_k80_12gb": "p2.16xlarge",
    "1_v100_16gb": "p3.2xlarge",
    "4_v100_16gb": "p3.8xlarge",
    "8_v100_16gb": "p3.16xlarge",
    "8_v100_32gb": "p3dn.24xlarge",
    "1_t4_16gb": "g4dn.xlarge",
    "4_t4_16gb": "g4dn.12xlarge",
    "8_t4_16gb": "g4dn.metal",
    "8_a100_40gb": "p4d.24xlarge",
    "1_m60_8gb": "g3s.xlarge",
    "2_m60_8gb": "g3.8xlarge",
    "4_m60_8gb": "g3.16xlarge",
    "2_cpu_4gb": "t2.medium",
    "2_cpu_8gb": "t2.large",
    "4_cpu_16gb": "t2.xlarge",
    "8_cpu_32gb": "t2.2xlarge",
}

# Spot checks against AWS's published specs: (vCPUs, GiB, GPUs, model, GiB per GPU).
AWS_SPECS = {
    "t2.medium": (2, 4, 0, None, None),
    "t3.2xlarge": (8, 32, 0, None, None),
    "m5.24xlarge": (96, 384, 0, None, None),
    "c5.9xlarge": (36, 72, 0, None, None),
    "r5.large": (2, 16, 0, None, None),
    "p2.xlarge": (4, 61, 1, "K80", 12),
    "p2.16xlarge": (64, 732, 16, "K80", 12),
    "p3.2xlarge": (8, 61, 1, "V100", 16),
    "p3.16xlarge": (64, 488, 8, "V100", 16),
    "p3dn.24xlarge": (96, 768, 8, "V100", 32),
    "g4dn.xlarge": (4, 16, 1, "T4", 16),
    "g4dn.12xlarge": (48, 192, 4, "T4", 16),
    "g5.xlarge": (4, 16, 1, "A10G", 24),
    "g5.48xlarge": (192, 768, 8, "A10G", 24),
    "g6.12xlarge": (48, 192, 4, "L4", 24),
    "p4d.24xlarge": (96, 1152, 8, "A100", 40),
    "g3s.xlarge": (4, 30.5, 1, "M60", 8),
}


def test_nicknames_are_one_to_one() -> None:
    named = [t for t in INSTANCE_TYPES.values() if t.nickname is not None]
    nicknames = [t.nickname for t in named]
    assert len(set(nicknames)) == len(nicknames)
    assert len(NICKNAMES) == len(named)
    assert sorted(NICKNAMES.values()) == sorted(t.name for t in named)
    assert not set(NICKNAMES) & set(INSTANCE_TYPES)


@pytest.mark.parametrize("itype", list(INSTANCE_TYPES.values()), ids=lambda t: t.name)
def test_every_catalogue_entry_resolves_by_name_and_nickname(itype) -> None:
    assert resolve_instance_type(itype.name) is itype
    if itype.nickname is not None:
        assert resolve_instance_type(itype.nickname) is itype


@pytest.mark.parametrize("itype", list(INSTANCE_TYPES.values()), ids=lambda t: t.name)
def test_entries_are_consistent(itype) -> None:
    assert re.fullmatch(r"[a-z][a-z0-9]*\.[a-z0-9]+", itype.name)
    assert itype.vcpus > 0 and itype.memory_gib > 0
    if itype.gpus:
        assert itype.gpu_model and itype.gpu_memory_gib
    else:
        assert itype.gpu_model is None and itype.gpu_memory_gib is None


@pytest.mark.parametrize(
    "itype",
    [t for t in INSTANCE_TYPES.values() if t.nickname is not None],
    ids=lambda t: t.name,
)
def test_nickname_describes_the_machine(itype) -> None:
    if itype.gpus:
        expected = f"{itype.gpus}_{itype.gpu_model.lower()}_{itype.gpu_memory_gib}gb"
    else:
        expected = f"{itype.vcpus}_cpu_{itype.memory_gib:g}gb"
    assert itype.nickname == expected


@pytest.mark.parametrize(("nickname", "aws_name"), sorted(GRID_NICKNAMES.items()))
def test_grid_nicknames_keep_their_meaning(nickname: str, aws_name: str) -> None:
    assert resolve_instance_type(nickname).name == aws_name
    assert INSTANCE_TYPES[aws_name].nickname == nickname


@pytest.mark.parametrize(("name", "spec"), sorted(AWS_SPECS.items()))
def test_specs_match_aws(name: str, spec: tuple) -> None:
    t = INSTANCE_TYPES[name]
    assert (t.vcpus, t.memory_gib, t.gpus, t.gpu_model, t.gpu_memory_gib) == spec


def test_catalogue_covers_the_ml_families() -> None:
    families = {name.split(".")[0] for name in INSTANCE_TYPES}
    assert {"t2", "t3", "m5", "c5", "r5", "g4dn", "g5", "p2", "p3", "p3dn", "p4d"} <= families


def test_catalogue_is_read_only() -> None:
    with pytest.raises(TypeError):
        INSTANCE_TYPES["x1.huge"] = INSTANCE_TYPES["t2.medium"]  # type: ignore[index]


def test_unknown_type_names_value_and_examples() -> None:
    with pytest.raises(GridctlError) as exc:
        resolve_instance_type("x1.foo")
    assert exc.value.message == (
        "unknown instance type 'x1.foo': use an AWS type such as g4dn.xlarge or a Grid "
        "nickname such as 1_t4_16gb (see 'gridctl run --help')"
    )
    assert exc.value.exit_code == EXIT_USAGE


@pytest.mark.parametrize(
    ("typo", "suggestion"),
    [
        ("g4dn.xlarg", "g4dn.xlarge"),
        ("p3.2xlarg", "p3.2xlarge"),
        ("8_v100_32g", "8_v100_32gb"),
        ("G4DN.XLARGE", "g4dn.xlarge"),
        ("8_V100_32gb", "8_v100_32gb"),
    ],
)
def test_unknown_type_suggests_closest(typo: str, suggestion: str) -> None:
    with pytest.raises(GridctlError, match=re.escape(f"(did you mean {suggestion}?)")):
        resolve_instance_type(typo)


def test_empty_type_is_refused() -> None:
    with pytest.raises(GridctlError, match="unknown instance type ''"):
        resolve_instance_type("")


def test_check_fits_accepts_the_whole_machine() -> None:
    g4 = INSTANCE_TYPES["g4dn.xlarge"]
    check_fits(g4, cpus=4, gpus=1, memory_bytes=16 * GIB)
    check_fits(g4, cpus=0.5, gpus=0, memory_bytes=1)
    check_fits(g4, cpus=None, gpus=None, memory_bytes=None)


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        ({"cpus": 4.5}, "--cpus 4.5 requested, 4 vCPUs available"),
        ({"gpus": 2}, "--gpus 2 requested, 1 GPU available"),
        ({"memory_bytes": 16 * GIB + 1}, "--memory 16 GiB requested, 16 GiB available"),
        ({"memory_bytes": 32 * GIB}, "--memory 32 GiB requested, 16 GiB available"),
    ],
)
def test_check_fits_names_the_resource(request_: dict, expected: str) -> None:
    kwargs = {"cpus": None, "gpus": None, "memory_bytes": None, **request_}
    with pytest.raises(GridctlError) as exc:
        check_fits(INSTANCE_TYPES["g4dn.xlarge"], **kwargs)
    assert exc.value.message == f"instance type g4dn.xlarge is too small: {expected}"


def test_check_fits_lists_every_shortfall() -> None:
    with pytest.raises(GridctlError) as exc:
        check_fits(INSTANCE_TYPES["t2.medium"], cpus=8, gpus=1, memory_bytes=16 * GIB)
    assert exc.value.message == (
        "instance type t2.medium is too small: --cpus 8 requested, 2 vCPUs available; "
        "--gpus 1 requested, 0 GPUs available; --memory 16 GiB requested, 4 GiB available"
    )


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        ({"cpus": 0}, "--cpus 0: must be greater than 0"),
        ({"cpus": -1}, "--cpus -1: must be greater than 0"),
        ({"cpus": float("nan")}, "--cpus nan: must be greater than 0"),
        ({"gpus": -1}, "--gpus -1: must not be negative"),
        ({"memory_bytes": 0}, "--memory 0 bytes: must be greater than 0"),
    ],
)
def test_check_fits_refuses_nonsense(request_: dict, expected: str) -> None:
    kwargs = {"cpus": None, "gpus": None, "memory_bytes": None, **request_}
    with pytest.raises(GridctlError) as exc:
        check_fits(INSTANCE_TYPES["p3.16xlarge"], **kwargs)
    assert exc.value.message == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10G", 10 * GIB),
        ("512M", 512 * 2**20),
        ("1.5G", 3 * 2**29),
        ("2T", 2 * 2**40),
        ("100K", 100 * 1024),
        ("10Gi", 10 * GIB),
        ("10GB", 10 * GIB),
        ("10GiB", 10 * GIB),
        ("10g", 10 * GIB),
        ("0.5K", 512),
        (".5G", GIB // 2),
        (" 4G ", 4 * GIB),
        ("4 G", 4 * GIB),
    ],
)
def test_parse_memory(text: str, expected: int) -> None:
    assert parse_memory(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10", "--memory 10: the unit is required (e.g. 10G)"),
        ("1.5", "--memory 1.5: the unit is required (e.g. 1.5G)"),
        ("0G", "--memory 0G: must be greater than zero"),
        ("0.0001K", "--memory 0.0001K: must be greater than zero"),
        ("-1G", "--memory -1G: must be greater than zero"),
        ("-3", "--memory -3: must be greater than zero"),
        ("lots", "--memory 'lots': expected a size such as 512M, 10G or 1.5T"),
        ("", "--memory '': expected a size such as 512M, 10G or 1.5T"),
        ("10X", "--memory '10X': expected a size such as 512M, 10G or 1.5T"),
        ("G", "--memory 'G': expected a size such as 512M, 10G or 1.5T"),
        ("1e3G", "--memory '1e3G': expected a size such as 512M, 10G or 1.5T"),
        ("10GG", "--memory '10GG': expected a size such as 512M, 10G or 1.5T"),
    ],
)
def test_parse_memory_errors(text: str, expected: str) -> None:
    with pytest.raises(GridctlError) as exc:
        parse_memory(text)
    assert exc.value.message == expected


def test_parse_memory_label_names_the_source() -> None:
    with pytest.raises(GridctlError, match=r"^run.yml: compute.train.memory 8: the unit"):
        parse_memory("8", label="run.yml: compute.train.memory")


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, "0 B"),
        (100, "100 B"),
        (1024, "1 KiB"),
        (1536, "1.5 KiB"),
        (512 * 2**20, "512 MiB"),
        (10 * GIB, "10 GiB"),
        (3 * 2**29, "1.5 GiB"),
        (3000 * 2**40, "3000 TiB"),
        (-2048, "-2 KiB"),
    ],
)
def test_format_bytes(n: int, expected: str) -> None:
    assert format_bytes(n) == expected


@given(st.integers(min_value=1, max_value=10**6), st.sampled_from(["K", "M", "G", "T"]))
def test_format_then_parse_is_close(amount: int, unit: str) -> None:
    size = parse_memory(f"{amount}{unit}")
    assert abs(parse_memory(format_bytes(size).replace(" ", "")) - size) <= size * 0.05


def test_spot_equivalents_keep_the_gpus_and_never_shrink():
    from gridctl.cli.machines import equivalent_types

    for name in ("t2.medium", "g4dn.xlarge", "p3.2xlarge"):
        base = resolve_instance_type(name)
        others = equivalent_types(base)
        assert base not in others
        for other in others:
            assert (other.gpus, other.gpu_model) == (base.gpus, base.gpu_model)
            assert base.vcpus <= other.vcpus <= 2 * base.vcpus
            assert other.memory_gib >= base.memory_gib
    assert [t.name for t in equivalent_types(resolve_instance_type("g4dn.xlarge"))] == [
        "g4dn.2xlarge"
    ]


# ---------------------------------------------------------------------------------------------
# The type a run gets when it names none

DEFAULT = INSTANCE_TYPES["t2.medium"]
# GPU families the default AMI (Deep Learning Base GPU AMI) no longer supports.
OLD_GPU_FAMILIES = ("p2.", "g3", "p3")


def pick(cpus=None, gpus=None, memory_bytes=None):
    return pick_instance_type(DEFAULT, cpus=cpus, gpus=gpus, memory_bytes=memory_bytes).name


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        ({}, "t2.medium"),
        ({"cpus": 1, "gpus": 0}, "t2.medium"),
        ({"cpus": 2, "memory_bytes": 4 * GIB}, "t2.medium"),
        ({"gpus": 1}, "g4dn.xlarge"),
        ({"gpus": 2}, "g4dn.12xlarge"),
        ({"gpus": 4}, "g4dn.12xlarge"),
        ({"gpus": 8}, "g4dn.metal"),
        ({"gpus": 1, "cpus": 8}, "g4dn.2xlarge"),
        ({"gpus": 1, "memory_bytes": 20 * GIB}, "g4dn.2xlarge"),
        ({"cpus": 4}, "c5.xlarge"),
        ({"cpus": 3}, "c5.xlarge"),
        ({"cpus": 2.5, "memory_bytes": 16 * GIB}, "t2.xlarge"),
        ({"memory_bytes": 6 * GIB}, "t2.large"),
        ({"memory_bytes": 64 * GIB}, "r5.2xlarge"),
        ({"cpus": 96, "memory_bytes": 700 * GIB}, "r5.24xlarge"),
    ],
)
def test_without_a_type_the_default_or_else_the_smallest_that_fits(request_, expected) -> None:
    assert pick(**request_) == expected


@given(
    cpus=st.one_of(st.none(), st.floats(0.1, 192)),
    gpus=st.one_of(st.none(), st.integers(0, 8)),
    memory=st.one_of(st.none(), st.integers(1, 2048 * GIB)),
)
def test_the_picked_type_fits_and_none_smaller_does(cpus, gpus, memory) -> None:
    def fits(t) -> bool:
        try:
            check_fits(t, cpus=cpus, gpus=gpus, memory_bytes=memory)
        except GridctlError:
            return False
        return True

    candidates = [
        t for t in INSTANCE_TYPES.values() if fits(t) and not t.name.startswith(OLD_GPU_FAMILIES)
    ]
    try:
        picked = pick_instance_type(DEFAULT, cpus=cpus, gpus=gpus, memory_bytes=memory)
    except GridctlError as exc:
        assert exc.message.startswith("no current-generation instance type fits")
        assert candidates == []
        return
    assert picked in candidates
    if picked is not DEFAULT:
        assert not fits(DEFAULT)
        key = (picked.gpus, picked.vcpus, picked.memory_gib)
        assert all((t.gpus, t.vcpus, t.memory_gib) >= key for t in candidates)


@pytest.mark.parametrize(
    ("request_", "named"),
    [
        ({"gpus": 16}, "--gpus 16"),
        ({"cpus": 500, "gpus": 1}, "--cpus 500, --gpus 1"),
        ({"memory_bytes": 4096 * GIB}, "--memory 4 TiB"),
    ],
)
def test_when_nothing_fits_the_error_names_the_request(request_, named) -> None:
    with pytest.raises(GridctlError) as exc:
        pick(**request_)
    assert exc.value.exit_code == EXIT_USAGE
    assert exc.value.message == (
        f"no current-generation instance type fits {named} per experiment;"
        " ask for less or name a type with --instance_type"
    )


def test_old_gpu_families_are_never_picked_but_can_still_be_named() -> None:
    picked = {pick(gpus=g, cpus=c) for g in range(1, 9) for c in (1, 8, 32)}
    assert not [name for name in picked if name.startswith(OLD_GPU_FAMILIES)]
    check_fits(resolve_instance_type("p2.16xlarge"), cpus=None, gpus=16, memory_bytes=None)
    check_fits(resolve_instance_type("p3.8xlarge"), cpus=32, gpus=4, memory_bytes=None)


def test_summary_reads_as_a_user_weighs_a_type() -> None:
    assert INSTANCE_TYPES["g4dn.12xlarge"].summary == "48 vCPUs, 192 GiB, 4 T4 GPUs"
    assert INSTANCE_TYPES["g3s.xlarge"].summary == "4 vCPUs, 30.5 GiB, 1 M60 GPU"
    assert INSTANCE_TYPES["t2.nano"].summary == "1 vCPU, 0.5 GiB"
