"""Disks of a node: the extra gp3 disk of the launch template, formatted and mounted where
the run asked for its scratch space, and the instance's NVMe instance store, where it has
one, for the datastore cache; elsewhere the scratch space is a directory whose free space
is checked.

Only the node agent formats a disk, and only one that is unformatted, unmounted and has no
partitions: the scratch disk is also exactly the size the run asked for, the instance store
is the one the EC2 NVMe controller names so. Nothing else on the machine can be mistaken
for either. Where no such disk exists (a simulated node) the scratch space stays a
directory and the cache stays on the root disk.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gridctl.agent.units import GIB

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


def _blank(device: dict[str, Any]) -> bool:
    return not device.get("fstype") and not device.get("mountpoint") and not device.get("children")


def _path(device: dict[str, Any]) -> str:
    return device.get("path") or f"/dev/{device['name']}"


def scratch_device(
    listing: dict[str, Any], size_gb: int, loops: tuple[str, ...] = ()
) -> str | None:
    """In ``lsblk --json`` output, the blank disk of exactly ``size_gb`` GiB (or one of
    the ``loops`` of that size)."""
    for device in listing.get("blockdevices", []):
        kind = device.get("type")
        if (
            (kind == "disk" or (kind == "loop" and _path(device) in loops))
            and _blank(device)
            and int(device.get("size") or 0) == size_gb * GIB
        ):
            return _path(device)
    return None


def instance_store_device(listing: dict[str, Any]) -> str | None:
    """In ``lsblk --json`` output, the first blank NVMe instance store disk."""
    for device in listing.get("blockdevices", []):
        if (
            device.get("type") == "disk"
            and (device.get("model") or "").strip() == INSTANCE_STORE_MODEL
            and _blank(device)
        ):
            return _path(device)
    return None


_COLUMNS = "NAME,PATH,SIZE,TYPE,FSTYPE,MOUNTPOINT,MODEL"


def _lsblk() -> dict[str, Any]:
    try:
        listing = subprocess.run(
            ["lsblk", "--json", "--bytes", "--output", _COLUMNS],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return {}
    return json.loads(listing.stdout)


def _format_and_mount(device: str, path: Path) -> None:
    """ext4 with no blocks reserved for root: the agent's own data disk, where the 5%
    reserve would only make N GiB of disk hold less than the run asked for."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", device], check=True, capture_output=True)
    subprocess.run(["mount", device, str(path)], check=True, capture_output=True)


def mount_volume(path: Path, size_gb: int) -> str | None:
    """Format and mount the scratch disk at ``path``; the device, or None when this
    machine has none (the scratch space is then a plain directory)."""
    loops = tuple(filter(None, os.environ.get(LOOP_DEVICES, "").split(",")))
    device = scratch_device(_lsblk(), size_gb, loops)
    if device is not None:
        _format_and_mount(device, path)
    return device


def mount_instance_store(path: Path) -> str | None:
    """Format and mount the instance store at ``path``; the device, or None when this
    instance type has none."""
    device = instance_store_device(_lsblk())
    if device is not None:
        _format_and_mount(device, path)
    return device
