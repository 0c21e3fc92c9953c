"""Disks of a node: the extra gp3 disk of the launch template, formatted and mounted where
the run asked for its scratch space, and the instance's NVMe instance store, where it has
one, for the datastore cache; elsewhere the scratch space is a directory whose free space
is checked.

Only the node agent formats a disk, and only one that is unformatted, unmounted and has no
partitions: the scratch disk is also exactly the size the run asked for, the instance store
is the one the EC2 NVMe controller names so. Nothing else on the machine can be mistaken
for either. A disk already mounted where the agent mounts it is the agent's own from before
a restart, and is kept as it is. Where no such disk exists (a simulated node) the scratch
space stays a directory and the cache stays on the root disk.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gridctl.agent.core.units import GIB

LOOP_DEVICES = "GRIDCTL_LOOP_DEVICES"
"""Loop devices (comma-separated paths) that may stand in for the scratch disk: tests set
it to an image of the requested size; a real node leaves it unset, and then only a disk
counts."""
INSTANCE_STORE_MODEL = "Amazon EC2 NVMe Instance Storage"
DATASTORE_CACHE = ".gridctl-datastores"
"""The datastore cache's folder on a scratch space: beside the experiments' own folders,
which are removed when each experiment ends, so the cache outlives them."""


@dataclass
class Disks:
    """What the node set up for its experiments before any of them starts."""

    scratch: Path | None = None
    """The machine's scratch space (a mounted volume or a plain directory)."""
    scratch_disk: str | None = None
    """The device mounted at ``scratch``: a disk of exactly the size the run asked for,
    so its free space is not checked (see ``ExperimentRunner``)."""
    instance_store: Path | None = None

    def datastore_cache(self, root_disk: Path) -> Path:
        """The instance store, else the scratch space, else the root disk: the root disk
        of an instance is small and holds the system, the others are there for data."""
        if self.instance_store is not None:
            return self.instance_store / "datastores"
        if self.scratch is not None:
            return self.scratch / DATASTORE_CACHE
        return root_disk


def nearest_existing(path: Path) -> Path:
    """The path itself or its nearest ancestor that exists."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def shortfall(path: Path, size_gb: int) -> str | None:
    """Why the directory ``path`` cannot give ``size_gb`` GiB of scratch space, or None
    when it can; the space is measured where ``path`` is, or will be, created."""
    free = shutil.disk_usage(nearest_existing(path)).free
    if free >= size_gb * GIB:
        return None
    return f"--scratch_size {size_gb} GB: only {free / GIB:.1f} GB free at {path}"


Device = dict[str, Any]
"""One entry of ``lsblk --json`` output."""


def scratch_disk(size_gb: int, loops: tuple[str, ...] = ()) -> Callable[[Device], bool]:
    """Whether a device is a disk of exactly ``size_gb`` GiB (or one of the ``loops``)."""

    def fits(device: Device) -> bool:
        kind, size = device.get("type"), int(device.get("size") or 0)
        return (kind == "disk" or (kind == "loop" and _path(device) in loops)) and (
            size == size_gb * GIB
        )

    return fits


def instance_store(device: Device) -> bool:
    return (
        device.get("type") == "disk" and (device.get("model") or "").strip() == INSTANCE_STORE_MODEL
    )


def pick(
    listing: dict[str, Any], fits: Callable[[Device], bool], path: Path
) -> tuple[str, bool] | None:
    """The unpartitioned device ``fits`` accepts that is mounted at ``path`` already (by
    this agent, before it restarted), as (device, True); else the first blank one, as
    (device, False); None when there is neither."""
    devices = [d for d in listing.get("blockdevices", []) if fits(d) and not d.get("children")]
    for device in devices:
        if device.get("mountpoint") == str(path):
            return _path(device), True
    for device in devices:
        if not device.get("fstype") and not device.get("mountpoint"):
            return _path(device), False
    return None


def _path(device: Device) -> str:
    return device.get("path") or f"/dev/{device['name']}"


_COLUMNS = "NAME,PATH,SIZE,TYPE,FSTYPE,MOUNTPOINT,MODEL"


def _lsblk() -> dict[str, Any]:
    try:
        listing = subprocess.run(
            ["lsblk", "--json", "--bytes", "--output", _COLUMNS],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return {}
    found: dict[str, Any] = json.loads(listing.stdout)
    return found


def _mount(fits: Callable[[Device], bool], path: Path) -> str | None:
    """Format and mount the device ``fits`` accepts at ``path``, unless it is there
    already; the device, or None when this machine has none."""
    found = pick(_lsblk(), fits, path)
    if found is None:
        return None
    device, mounted = found
    if not mounted:
        # No blocks reserved for root: on the agent's own data disk the 5% reserve would
        # only make N GiB of disk hold less than the run asked for.
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mkfs.ext4", "-q", "-F", "-m", "0", device], check=True, capture_output=True
        )
        subprocess.run(["mount", device, str(path)], check=True, capture_output=True)
    return device


def mount_volume(path: Path, size_gb: int) -> str | None:
    """The scratch disk at ``path``; the device, or None when this machine has none (the
    scratch space is then a plain directory)."""
    loops = tuple(filter(None, os.environ.get(LOOP_DEVICES, "").split(",")))
    return _mount(scratch_disk(size_gb, loops), path)


def mount_instance_store(path: Path) -> str | None:
    """The instance store at ``path``; the device, or None when this instance type has
    none."""
    return _mount(instance_store, path)
