"""The node's disks, for real: a blank block device of the size the run asked for (a loop
device standing in for the launch template's gp3 disk) is formatted and mounted by the
real agent, and the experiment runs on it; and the instance store is told from what
``lsblk`` shows on an EC2 instance."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from gridctl.agent.core.spec import ExperimentSpec, Scratch
from gridctl.agent.core.units import GIB
from gridctl.agent.runner.scratch import (
    DATASTORE_CACHE,
    LOOP_DEVICES,
    Disks,
    instance_store,
    pick,
    scratch_disk,
)

from .single_node import EXPERIMENT, RUN, Cloud, log_of

FILL = """\
import json, os
scratch = os.environ["GRIDCTL_SCRATCH_DIR"]
with open(os.path.join(scratch, "big"), "wb") as f:
    f.write(b"x" * (256 << 20))
disk = os.statvfs(scratch)
os.makedirs("out", exist_ok=True)
with open("out/scratch.json", "w") as f:
    json.dump({"dir": scratch, "size": disk.f_blocks * disk.f_frsize}, f)
"""


@pytest.fixture
def cloud(single_node: Cloud) -> Cloud:
    """Here ``cloud`` is one node's side of the account, not the CLI that conftest's is."""
    return single_node


def deploy_fill(cloud, project: Path, scratch: Scratch) -> None:
    """``FILL`` as the experiment, asking for ``scratch``."""
    cloud.deploy({"fill.py": FILL}, ("python", "fill.py"), project)
    key = f"runs/{RUN}/{EXPERIMENT}/spec.json"
    spec = ExperimentSpec.from_json(cloud.store.get_bytes(key).decode())
    cloud.store.put_bytes(key, replace(spec, scratch=scratch).to_json().encode())


def _mounts(device: str) -> list[str]:
    found = subprocess.run(
        ["findmnt", "--json", "--source", device], capture_output=True, text=True
    )
    if found.returncode != 0:
        return []
    return [fs["target"] for fs in json.loads(found.stdout)["filesystems"]]


@contextlib.contextmanager
def loop_disk(image: Path, size_gb: int) -> Iterator[str]:
    """A blank block device of ``size_gb`` GiB (a loop device on a sparse image), unmounted
    and detached afterwards whatever the test did."""
    with image.open("wb") as f:
        f.truncate(size_gb * GIB)
    attached = subprocess.run(
        ["losetup", "--find", "--show", str(image)], capture_output=True, text=True
    )
    if attached.returncode != 0:
        image.unlink()
        pytest.skip(f"this machine cannot make loop devices: {attached.stderr.strip()}")
    device = attached.stdout.strip()
    try:
        yield device
    finally:
        for target in _mounts(device):
            subprocess.run(["umount", "--lazy", target], check=False)
        subprocess.run(["losetup", "--detach", device], check=False)
        image.unlink()


def test_a_run_with_scratch_space_runs_on_the_disk_the_node_formats(cloud, project, tmp_path):
    """A fresh ext4 disk of N GiB never has N GiB free (journal, inode tables), which once
    failed every ``--scratch_size N`` run right after the node mounted its own disk."""
    deploy_fill(cloud, project, Scratch(1, "/scratch"))
    with loop_disk(tmp_path / "scratch.img", 1) as device:
        code, output = cloud.run_agent(**{LOOP_DEVICES: device})
        log = log_of(cloud).decode()
        assert f"scratch disk {device} mounted at {cloud.root / 'scratch'}" in output, output
        status = cloud.status()
        assert status["status"] == "succeeded", f"{status['reason']}\n{log}"
        assert code == 0, output
        superblock = subprocess.run(
            ["tune2fs", "-l", device], capture_output=True, text=True, check=True
        ).stdout
        assert "Reserved block count:     0\n" in superblock  # all of it for the run
    seen = json.loads(cloud.store.get_bytes(f"runs/{RUN}/{EXPERIMENT}/artifacts/out/scratch.json"))
    assert seen["dir"] == str(cloud.root / "scratch" / EXPERIMENT)
    assert 0.9 * GIB < seen["size"] < GIB  # the disk itself, less what ext4 keeps for itself


def test_an_agent_restarted_on_its_node_keeps_the_disk_it_mounted(cloud, project, tmp_path):
    deploy_fill(cloud, project, Scratch(1, "/scratch"))
    with loop_disk(tmp_path / "scratch.img", 1) as device:
        # What the agent did before it restarted: the disk formatted, mounted, written to.
        path = cloud.root / "scratch"
        path.mkdir()
        subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", device], check=True)
        subprocess.run(["mount", device, str(path)], check=True)
        (path / "kept").write_text("from the earlier attempt")
        code, output = cloud.run_agent(**{LOOP_DEVICES: device})
        assert f"scratch disk {device} mounted at {path}" in output, output
        status = cloud.status()
        assert status["status"] == "succeeded", f"{status['reason']}\n{log_of(cloud).decode()}"
        assert (path / "kept").read_text() == "from the earlier attempt"
        assert code == 0, output


def test_scratch_space_without_a_disk_must_be_free_where_it_is(cloud, project):
    deploy_fill(cloud, project, Scratch(10**8, "/scratch"))
    code, output = cloud.run_agent()
    assert code == 0, output
    assert "no 100000000 GiB scratch disk on this machine" in output
    status = cloud.status()
    assert status["status"] == "failed"
    assert status["reason"].startswith(
        "could not prepare the experiment: --scratch_size 100000000 GB: only"
    )


def _lsblk(*devices: dict) -> dict:
    return {"blockdevices": list(devices)}


ROOT = {
    "name": "nvme0n1",
    "path": "/dev/nvme0n1",
    "size": 100 * GIB,
    "type": "disk",
    "fstype": None,
    "mountpoint": None,
    "model": "Amazon Elastic Block Store",
    "children": [{"name": "nvme0n1p1", "type": "part", "mountpoint": "/"}],
}
SCRATCH = {
    "name": "nvme1n1",
    "path": "/dev/nvme1n1",
    "size": 10 * GIB,
    "type": "disk",
    "fstype": None,
    "mountpoint": None,
    "model": "Amazon Elastic Block Store",
}
STORE = {
    "name": "nvme2n1",
    "path": "/dev/nvme2n1",
    "size": 900 * 10**9,
    "type": "disk",
    "fstype": None,
    "mountpoint": None,
    "model": "Amazon EC2 NVMe Instance Storage        ",
}
LOOP = {
    "name": "loop3",
    "path": "/dev/loop3",
    "size": 10 * GIB,
    "type": "loop",
    "fstype": None,
    "mountpoint": None,
    "model": None,
}


def test_the_instance_store_is_the_blank_nvme_instance_storage_disk():
    here = Path("/opt/gridctl/instance-store")
    assert pick(_lsblk(ROOT, SCRATCH, STORE), instance_store, here) == ("/dev/nvme2n1", False)
    assert pick(_lsblk(ROOT, SCRATCH), instance_store, here) is None
    assert pick(_lsblk({**STORE, "mountpoint": "/data"}), instance_store, here) is None
    assert pick(_lsblk({**STORE, "fstype": "xfs"}), instance_store, here) is None
    assert pick(_lsblk({**STORE, "children": [{"name": "p1"}]}), instance_store, here) is None
    # Mounted there by the agent before it restarted: kept as it is.
    mounted = {**STORE, "fstype": "ext4", "mountpoint": str(here)}
    assert pick(_lsblk(mounted), instance_store, here) == ("/dev/nvme2n1", True)


def test_the_scratch_disk_is_a_blank_disk_of_exactly_the_size_asked():
    here = Path("/scratch")
    assert pick(_lsblk(ROOT, STORE, SCRATCH), scratch_disk(10), here) == ("/dev/nvme1n1", False)
    assert pick(_lsblk(ROOT, SCRATCH), scratch_disk(11), here) is None
    assert pick(_lsblk({**SCRATCH, "mountpoint": "/x"}), scratch_disk(10), here) is None
    mounted = {**SCRATCH, "fstype": "ext4", "mountpoint": "/scratch"}
    assert pick(_lsblk(SCRATCH, mounted), scratch_disk(10), here) == ("/dev/nvme1n1", True)
    # A loop device counts only where the tests name it.
    assert pick(_lsblk(LOOP), scratch_disk(10), here) is None
    assert pick(_lsblk(LOOP), scratch_disk(10, ("/dev/loop4",)), here) is None
    assert pick(_lsblk(LOOP), scratch_disk(10, ("/dev/loop3",)), here) == ("/dev/loop3", False)


def test_the_datastore_cache_prefers_the_instance_store_then_the_scratch_space():
    root_disk = Path("/opt/gridctl/datastores")
    assert Disks().datastore_cache(root_disk) == root_disk
    scratch = Disks(scratch=Path("/scratch"))
    assert scratch.datastore_cache(root_disk) == Path("/scratch") / DATASTORE_CACHE
    both = replace(scratch, instance_store=Path("/opt/gridctl/instance-store"))
    assert both.datastore_cache(root_disk) == Path("/opt/gridctl/instance-store/datastores")
