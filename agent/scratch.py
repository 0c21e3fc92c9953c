"""Scratch space: on an EC2 node the extra gp3 disk of the launch template, formatted and
mounted where the run asked for it; elsewhere a directory whose free space is checked.

Only the node agent mounts a disk, and only one that is unformatted, unmounted, has no
partitions and is exactly the size the run asked for: nothing else on the machine can be
mistaken for it. Where no such disk exists (a simulated node) the scratch space stays a
directory.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from gridctl.agent.units import GIB


def nearest_existing(path: Path) -> Path:
    """The path itself or its nearest ancestor that exists."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def shortfall(path: Path, size_gb: int) -> str | None:
    """Why ``path`` cannot give ``size_gb`` GiB of scratch space, or None when it can; the
    space is measured where ``path`` is, or will be, created."""
    free = shutil.disk_usage(nearest_existing(path)).free
    if free >= size_gb * GIB:
        return None
    return f"--scratch_size {size_gb} GB: only {free / GIB:.1f} GB free at {path}"


def find_volume(size_gb: int) -> str | None:
    """The device path of the blank disk of ``size_gb`` GiB, if there is one."""
    try:
        listing = subprocess.run(
            ["lsblk", "--json", "--bytes", "--output", "NAME,PATH,SIZE,TYPE,FSTYPE,MOUNTPOINT"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    for device in json.loads(listing.stdout).get("blockdevices", []):
        blank = not device.get("fstype") and not device.get("mountpoint")
        if (
            device.get("type") == "disk"
            and blank
            and not device.get("children")
            and int(device.get("size") or 0) == size_gb * GIB
        ):
            return device.get("path") or f"/dev/{device['name']}"
    return None


def mount_volume(path: Path, size_gb: int) -> str | None:
    """Format and mount the scratch disk at ``path``; the device, or None when this
    machine has none (the scratch space is then a plain directory)."""
    device = find_volume(size_gb)
    if device is None:
        return None
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", device], check=True, capture_output=True)
    subprocess.run(["mount", device, str(path)], check=True, capture_output=True)
    return device
