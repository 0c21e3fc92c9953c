"""AWS instance types, Grid's nicknames for them, and memory and disk sizes as users write
them.

The catalogue is static so `--instance_type` can be checked (and a request checked
against it) before anything talks to AWS.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType

from gridctl.agent.core.units import count, format_bytes
from gridctl.cli.errors import GridctlError


@dataclass(frozen=True)
class InstanceType:
    """One AWS instance type; `gpu_memory_gib` is per GPU, as in Grid's nicknames."""

    name: str
    vcpus: int
    memory_gib: float
    gpus: int
    gpu_model: str | None
    gpu_memory_gib: int | None
    nickname: str | None

    @property
    def summary(self) -> str:
        """``4 vCPUs, 16 GiB, 1 T4 GPU``: what a user weighs when choosing a type."""
        parts = [count(self.vcpus, "vCPU"), f"{self.memory_gib:g} GiB"]
        if self.gpus:
            parts.append(count(self.gpus, f"{self.gpu_model} GPU"))
        return ", ".join(parts)


def _cpu(name: str, vcpus: int, memory_gib: float, nickname: str | None = None) -> InstanceType:
    return InstanceType(name, vcpus, memory_gib, 0, None, None, nickname)


def _gpu(
    name: str,
    vcpus: int,
    memory_gib: float,
    gpus: int,
    model: str,
    gpu_memory_gib: int,
    nickname: str | None = None,
) -> InstanceType:
    return InstanceType(name, vcpus, memory_gib, gpus, model, gpu_memory_gib, nickname)


# Nicknames are one-to-one: where several types share a shape (g4dn.xlarge ... g4dn.16xlarge
# all have one T4), only the smallest, the one Grid users meant, carries it.
_CATALOGUE: tuple[InstanceType, ...] = (
    _cpu("t2.nano", 1, 0.5),
    _cpu("t2.micro", 1, 1, "1_cpu_1gb"),
    _cpu("t2.small", 1, 2, "1_cpu_2gb"),
    _cpu("t2.medium", 2, 4, "2_cpu_4gb"),
    _cpu("t2.large", 2, 8, "2_cpu_8gb"),
    _cpu("t2.xlarge", 4, 16, "4_cpu_16gb"),
    _cpu("t2.2xlarge", 8, 32, "8_cpu_32gb"),
    _cpu("t3.nano", 2, 0.5),
    _cpu("t3.micro", 2, 1, "2_cpu_1gb"),
    _cpu("t3.small", 2, 2, "2_cpu_2gb"),
    _cpu("t3.medium", 2, 4),
    _cpu("t3.large", 2, 8),
    _cpu("t3.xlarge", 4, 16),
    _cpu("t3.2xlarge", 8, 32),
    _cpu("m5.large", 2, 8),
    _cpu("m5.xlarge", 4, 16),
    _cpu("m5.2xlarge", 8, 32),
    _cpu("m5.4xlarge", 16, 64, "16_cpu_64gb"),
    _cpu("m5.8xlarge", 32, 128, "32_cpu_128gb"),
    _cpu("m5.12xlarge", 48, 192, "48_cpu_192gb"),
    _cpu("m5.16xlarge", 64, 256, "64_cpu_256gb"),
    _cpu("m5.24xlarge", 96, 384, "96_cpu_384gb"),
    _cpu("c5.large", 2, 4),
    _cpu("c5.xlarge", 4, 8, "4_cpu_8gb"),
    _cpu("c5.2xlarge", 8, 16, "8_cpu_16gb"),
    _cpu("c5.4xlarge", 16, 32, "16_cpu_32gb"),
    _cpu("c5.9xlarge", 36, 72, "36_cpu_72gb"),
    _cpu("c5.12xlarge", 48, 96, "48_cpu_96gb"),
    _cpu("c5.18xlarge", 72, 144, "72_cpu_144gb"),
    _cpu("c5.24xlarge", 96, 192, "96_cpu_192gb"),
    _cpu("r5.large", 2, 16, "2_cpu_16gb"),
    _cpu("r5.xlarge", 4, 32, "4_cpu_32gb"),
    _cpu("r5.2xlarge", 8, 64, "8_cpu_64gb"),
    _cpu("r5.4xlarge", 16, 128, "16_cpu_128gb"),
    _cpu("r5.8xlarge", 32, 256, "32_cpu_256gb"),
    _cpu("r5.12xlarge", 48, 384, "48_cpu_384gb"),
    _cpu("r5.16xlarge", 64, 512, "64_cpu_512gb"),
    _cpu("r5.24xlarge", 96, 768, "96_cpu_768gb"),
    _gpu("p2.xlarge", 4, 61, 1, "K80", 12, "1_k80_12gb"),
    _gpu("p2.8xlarge", 32, 488, 8, "K80", 12, "8_k80_12gb"),
    _gpu("p2.16xlarge", 64, 732, 16, "K80", 12, "16_k80_12gb"),
    _gpu("g3s.xlarge", 4, 30.5, 1, "M60", 8, "1_m60_8gb"),
    _gpu("g3.4xlarge", 16, 122, 1, "M60", 8),
    _gpu("g3.8xlarge", 32, 244, 2, "M60", 8, "2_m60_8gb"),
    _gpu("g3.16xlarge", 64, 488, 4, "M60", 8, "4_m60_8gb"),
    _gpu("p3.2xlarge", 8, 61, 1, "V100", 16, "1_v100_16gb"),
    _gpu("p3.8xlarge", 32, 244, 4, "V100", 16, "4_v100_16gb"),
    _gpu("p3.16xlarge", 64, 488, 8, "V100", 16, "8_v100_16gb"),
    _gpu("p3dn.24xlarge", 96, 768, 8, "V100", 32, "8_v100_32gb"),
    _gpu("g4dn.xlarge", 4, 16, 1, "T4", 16, "1_t4_16gb"),
    _gpu("g4dn.2xlarge", 8, 32, 1, "T4", 16),
    _gpu("g4dn.4xlarge", 16, 64, 1, "T4", 16),
    _gpu("g4dn.8xlarge", 32, 128, 1, "T4", 16),
    _gpu("g4dn.16xlarge", 64, 256, 1, "T4", 16),
    _gpu("g4dn.12xlarge", 48, 192, 4, "T4", 16, "4_t4_16gb"),
    _gpu("g4dn.metal", 96, 384, 8, "T4", 16, "8_t4_16gb"),
    _gpu("g5.xlarge", 4, 16, 1, "A10G", 24, "1_a10g_24gb"),
    _gpu("g5.2xlarge", 8, 32, 1, "A10G", 24),
    _gpu("g5.4xlarge", 16, 64, 1, "A10G", 24),
    _gpu("g5.8xlarge", 32, 128, 1, "A10G", 24),
    _gpu("g5.16xlarge", 64, 256, 1, "A10G", 24),
    _gpu("g5.12xlarge", 48, 192, 4, "A10G", 24, "4_a10g_24gb"),
    _gpu("g5.24xlarge", 96, 384, 4, "A10G", 24),
    _gpu("g5.48xlarge", 192, 768, 8, "A10G", 24, "8_a10g_24gb"),
    _gpu("g6.xlarge", 4, 16, 1, "L4", 24, "1_l4_24gb"),
    _gpu("g6.2xlarge", 8, 32, 1, "L4", 24),
    _gpu("g6.4xlarge", 16, 64, 1, "L4", 24),
    _gpu("g6.8xlarge", 32, 128, 1, "L4", 24),
    _gpu("g6.16xlarge", 64, 256, 1, "L4", 24),
    _gpu("g6.12xlarge", 48, 192, 4, "L4", 24, "4_l4_24gb"),
    _gpu("g6.24xlarge", 96, 384, 4, "L4", 24),
    _gpu("g6.48xlarge", 192, 768, 8, "L4", 24, "8_l4_24gb"),
    _gpu("p4d.24xlarge", 96, 1152, 8, "A100", 40, "8_a100_40gb"),
    _gpu("p4de.24xlarge", 96, 1152, 8, "A100", 80, "8_a100_80gb"),
    _gpu("p5.48xlarge", 192, 2048, 8, "H100", 80, "8_h100_80gb"),
)

INSTANCE_TYPES: Mapping[str, InstanceType] = MappingProxyType({t.name: t for t in _CATALOGUE})
"""Every known AWS type by name."""

NICKNAMES: Mapping[str, str] = MappingProxyType(
    {t.nickname: t.name for t in _CATALOGUE if t.nickname is not None}
)
"""Grid nickname -> AWS type name; one-to-one."""


def resolve_instance_type(value: str) -> InstanceType:
    """Accept what Grid users type for `--instance_type`: an AWS name or a Grid nickname."""
    if value in INSTANCE_TYPES:
        return INSTANCE_TYPES[value]
    if value in NICKNAMES:
        return INSTANCE_TYPES[NICKNAMES[value]]
    known = [*INSTANCE_TYPES, *NICKNAMES]
    lowered = value.strip().lower()
    close = [lowered] if lowered in known else difflib.get_close_matches(lowered, known, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise GridctlError(
        f"unknown instance type {value!r}{hint}: use an AWS type such as g4dn.xlarge or a Grid "
        "nickname such as 1_t4_16gb (see 'gridctl run --help')"
    )


def equivalent_types(itype: InstanceType, limit: int = 3) -> tuple[InstanceType, ...]:
    """Other types a spot group may use for the same experiment: the same GPUs, at least the
    vCPUs (at most twice) and memory, smallest first; more types mean more spot pools."""
    same = [
        t
        for t in INSTANCE_TYPES.values()
        if t.name != itype.name
        and t.gpus == itype.gpus
        and t.gpu_model == itype.gpu_model
        and itype.vcpus <= t.vcpus <= 2 * itype.vcpus
        and t.memory_gib >= itype.memory_gib
    ]
    return tuple(sorted(same, key=lambda t: (t.vcpus, t.memory_gib, t.name))[:limit])


# Current GPU families, which the default PyTorch AMI supports (infra/amis.py). p2 (K80),
# g3 (M60) and p3 (V100) need an AMI of the user's own: they are left out of automatic
# picks but can still be named.
_PICKABLE_GPU_MODELS = frozenset({"T4", "A10G", "L4", "A100", "H100"})


def check_fits(
    itype: InstanceType, *, cpus: float | None, gpus: int | None, memory_bytes: int | None
) -> None:
    """Refuse a per-experiment request that no instance of this type could ever satisfy."""
    _check_request(cpus=cpus, gpus=gpus, memory_bytes=memory_bytes)
    problems = _shortfalls(itype, cpus=cpus, gpus=gpus, memory_bytes=memory_bytes)
    if problems:
        raise GridctlError(f"instance type {itype.name} is too small: " + "; ".join(problems))


def pick_instance_type(
    default: InstanceType, *, cpus: float | None, gpus: int | None, memory_bytes: int | None
) -> InstanceType:
    """The type for a run that names none: ``default`` when it can host one experiment, else
    the smallest that can (fewest GPUs, then vCPUs, then memory; catalogue order on ties)."""
    _check_request(cpus=cpus, gpus=gpus, memory_bytes=memory_bytes)

    def fits(t: InstanceType) -> bool:
        return not _shortfalls(t, cpus=cpus, gpus=gpus, memory_bytes=memory_bytes)

    if fits(default):
        return default
    fitting = [
        t for t in _CATALOGUE if (t.gpus == 0 or t.gpu_model in _PICKABLE_GPU_MODELS) and fits(t)
    ]
    if not fitting:
        asked = [f"--cpus {cpus:g}"] if cpus is not None else []
        asked += [f"--gpus {gpus}"] if gpus else []
        asked += [f"--memory {format_bytes(memory_bytes)}"] if memory_bytes is not None else []
        raise GridctlError(
            f"no current-generation instance type fits {', '.join(asked)} per experiment;"
            " ask for less or name a type with --instance_type"
        )
    return min(fitting, key=lambda t: (t.gpus, t.vcpus, t.memory_gib))


def _check_request(*, cpus: float | None, gpus: int | None, memory_bytes: int | None) -> None:
    if cpus is not None and not cpus > 0:
        raise GridctlError(f"--cpus {cpus:g}: must be greater than 0")
    if gpus is not None and gpus < 0:
        raise GridctlError(f"--gpus {gpus}: must not be negative")
    if memory_bytes is not None and memory_bytes <= 0:
        raise GridctlError(f"--memory {memory_bytes} bytes: must be greater than 0")


def _shortfalls(
    itype: InstanceType, *, cpus: float | None, gpus: int | None, memory_bytes: int | None
) -> list[str]:
    """What one experiment asks for beyond what an instance of this type has."""
    problems = []
    if cpus is not None and cpus > itype.vcpus:
        problems.append(f"--cpus {cpus:g} requested, {count(itype.vcpus, 'vCPU')} available")
    if gpus is not None and gpus > itype.gpus:
        problems.append(f"--gpus {gpus} requested, {count(itype.gpus, 'GPU')} available")
    available = int(itype.memory_gib * 2**30)
    if memory_bytes is not None and memory_bytes > available:
        problems.append(
            f"--memory {format_bytes(memory_bytes)} requested, {format_bytes(available)} available"
        )
    return problems


DEFAULT_DISK_SIZE = 100
"""GiB of each instance's root disk when the run does not say (``--disk_size``)."""
DISK_SIZES = range(8, 16385)
"""Root disk sizes in whole GiB, as the experiment module checks them: Amazon's images
need 8, gp3 stops at 16384."""


def check_disk_size(value: object, *, label: str = "--disk_size") -> int:
    """``value`` as a root disk size in GiB; a GridctlError naming ``label`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value not in DISK_SIZES:
        raise GridctlError(
            f"{label} must be a whole number of GiB from {DISK_SIZES[0]} to {DISK_SIZES[-1]},"
            f" not {value!r}"
        )
    return value


_UNITS = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_MEMORY_RE = re.compile(r"([0-9]*\.?[0-9]+)\s*([KMGT])(?:i?B|i)?", re.IGNORECASE)
_NUMBER_RE = re.compile(r"[0-9]*\.?[0-9]+")


def parse_memory(value: str, *, label: str = "--memory") -> int:
    """Bytes from `10G`, `512M`, `1.5Gi`, `2TB` (binary units); the unit is required, as in Grid.

    `label` names where the value came from in errors, e.g. a config file key.
    """
    text = value.strip()
    unsigned = text.removeprefix("-")
    match = _MEMORY_RE.fullmatch(unsigned)
    if match is None and not _NUMBER_RE.fullmatch(unsigned):
        raise GridctlError(f"{label} {value!r}: expected a size such as 512M, 10G or 1.5T")
    if unsigned != text:
        raise GridctlError(f"{label} {value}: must be greater than zero")
    if match is None:
        raise GridctlError(f"{label} {value}: the unit is required (e.g. {text}G)")
    amount = int(Decimal(match.group(1)) * _UNITS[match.group(2).upper()])
    if amount < 1:
        raise GridctlError(f"{label} {value}: must be greater than zero")
    return amount
