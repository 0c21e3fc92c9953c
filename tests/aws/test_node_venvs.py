"""The script's Python environment on nodes: the real agent on simulated instances in moto,
installing small packages from the package index once per key for the whole environment
and restoring the bucket's archive everywhere else; the node's own framework Python as the
base; a slow or failed builder seen by the nodes waiting for it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gridctl.agent.core.contract import VENVS, VenvClaim, VenvFailure, VenvKeys, VenvManifest

from .emulator import free_port
from .single_node import BASE, Cloud, log_of, started, status_is, wait_for

REQUIREMENTS = "toolz\ntext-unidecode\n"
"""Two small pure-Python wheels that neither the agent's interpreter nor its base has."""
IMPORTS = """\
import sys
import text_unidecode, toolz
print("imported toolz and text_unidecode in", sys.prefix, flush=True)
"""
INSTALLED = b"gridctl: pip install -r requirements.txt"
WAITING = b"another machine is building this Python environment: waiting for it"


@pytest.fixture
def cloud(single_node: Cloud) -> Cloud:
    return single_node


def keys(cloud: Cloud) -> set[str]:
    return {key.split("/")[1] for key in cloud.store.list(VENVS)}


def again(cloud: Cloud) -> None:
    """The experiment as a new node finds it: not started yet."""
    cloud.store.delete_prefix(f"{BASE}/status.json")
    cloud.store.delete_prefix(f"{BASE}/log")


def succeeded(cloud: Cloud, root: Path | None = None, **extra: str) -> bytes:
    code, output = cloud.run_agent(root, **extra)
    assert code == 0, output
    status = cloud.status()
    assert status["status"] == "succeeded", (status, log_of(cloud).decode())
    return log_of(cloud)


def test_the_first_node_builds_and_every_later_one_restores(cloud, project):
    cloud.deploy(
        {"train.py": IMPORTS, "requirements.txt": REQUIREMENTS}, ("python", "train.py"), project
    )
    log = succeeded(cloud)
    (key,) = keys(cloud)
    venv = cloud.root / "opt" / "gridctl" / "venvs" / key
    assert INSTALLED in log
    assert f"imported toolz and text_unidecode in {venv}".encode() in log
    venv_keys = VenvKeys(key)
    manifest = VenvManifest.decode(cloud.store.get_bytes(venv_keys.manifest))
    assert manifest.root == str(venv)
    assert json.loads(cloud.store.get_bytes(venv_keys.claim))["builder"] == cloud.instance_id

    again(cloud)
    other = cloud.fresh_root()
    log = succeeded(cloud, other)
    assert INSTALLED not in log
    assert b"restored from the store" in log
    restored = other / "opt" / "gridctl" / "venvs" / key
    assert f"imported toolz and text_unidecode in {restored}".encode() in log

    again(cloud)
    changed = REQUIREMENTS + "# pinned later\n"
    cloud.deploy(
        {"train.py": IMPORTS, "requirements.txt": changed}, ("python", "train.py"), project
    )
    log = succeeded(cloud, cloud.fresh_root())
    assert INSTALLED in log
    assert len(keys(cloud)) == 2


def test_two_nodes_racing_for_a_key_build_it_once(gang, project):
    """A gang's ranks prepare at once, each before its ready marker: one builds, the other
    waits for the archive."""
    gang.deploy(
        {"train.py": IMPORTS, "requirements.txt": REQUIREMENTS}, ("python", "train.py"), project
    )
    nodes = [gang.boot(instance) for instance in sorted(gang.instances())]
    for node in nodes:
        gang.start(node, GRIDCTL_MASTER_PORT=str(free_port()))
    for node in nodes:
        assert node.ended() == 0, node.output()
    assert gang.status()["status"] == "succeeded"
    logs = [gang.log(rank) for rank in (0, 1)]
    assert sum(INSTALLED in log for log in logs) == 1, logs
    assert sum(b"restored from the store" in log for log in logs) == 1, logs
    for log in logs:
        assert b"imported toolz and text_unidecode in" in log


def test_a_node_waits_for_the_builder_then_builds_itself(cloud, project):
    """A claim nobody delivers on (its node died): the experiment shows the phase while it
    waits, and after GRIDCTL_VENV_WAIT the node builds the venv itself."""
    cloud.deploy(
        {"train.py": IMPORTS, "requirements.txt": REQUIREMENTS}, ("python", "train.py"), project
    )
    key = _claim_as_another_node(cloud, cloud.root)
    with started(cloud, GRIDCTL_VENV_WAIT="6") as agent:
        wait_for(lambda: cloud.store.exists(f"{BASE}/status.json") and _phase(cloud))
        output, _ = agent.communicate(timeout=180)
    assert agent.returncode == 0, output
    log = log_of(cloud)
    assert WAITING in log
    assert b"did not come within 6 s: building it here" in log
    assert INSTALLED in log
    assert cloud.status()["status"] == "succeeded"
    assert cloud.store.exists(VenvKeys(key).manifest)


def test_a_builders_failure_fails_its_waiters_at_once(cloud, project):
    cloud.deploy(
        {"train.py": IMPORTS, "requirements.txt": REQUIREMENTS}, ("python", "train.py"), project
    )
    key = _claim_as_another_node(cloud, cloud.root)
    with started(cloud) as agent:
        wait_for(lambda: cloud.store.exists(f"{BASE}/status.json") and _phase(cloud))
        status = cloud.status()
        assert status["attempts"][-1]["reason"] == "building environment"
        # A failure recorded before the node looked would be an old one: it would try again.
        wait_for(lambda: WAITING in log_of(cloud), timeout=60)
        reason = "installing requirements.txt failed: ERROR: No matching distribution found"
        failure = VenvFailure(reason, 4e9)
        cloud.store.put_bytes(VenvKeys(key).failed, failure.encode())
        wait_for(status_is(cloud, "failed"), timeout=60)
        output, _ = agent.communicate(timeout=60)
    assert agent.returncode == 0, output
    status = cloud.status()
    assert (status["exit_code"], status["reason"]) == (None, reason)
    assert INSTALLED not in log_of(cloud)


def test_the_framework_python_of_the_ami_is_the_scripts(cloud, project):
    """A Deep Learning AMI's framework venv at /opt/pytorch: a script with no dependency
    file runs on it and imports its packages, with nothing installed."""
    framework = cloud.root / "opt" / "pytorch"
    python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([python, "-m", "venv", "--without-pip", str(framework)], check=True)
    (site,) = framework.glob("lib/python3.*/site-packages")
    (site / "fake_torch.py").write_text("VERSION = 'framework'\n")
    script = (
        "import fake_torch, sys\nprint('torch is', fake_torch.VERSION, 'from', sys.executable)\n"
    )
    cloud.deploy({"train.py": script}, ("python", "train.py"), project)
    log = succeeded(cloud)
    assert f"torch is framework from {framework / 'bin' / 'python'}".encode() in log
    assert b"pip install" not in log


def _claim_as_another_node(cloud: Cloud, root: Path) -> str:
    """The key this node's venv will have, claimed in the bucket by an instance that never
    delivers. The node's base is the agent's own venv's interpreter (no framework under
    the node's root); its image the stand-in's AMI."""
    from gridctl.agent.core.venvkey import venv_key
    from gridctl.agent.node.python import base_python
    from gridctl.agent.runner.venv import probe

    base = probe(base_python(root), image=cloud.imds.ami_id, root=root)
    key = venv_key([("requirements.txt", REQUIREMENTS.encode())], base)
    cloud.store.put_if_absent(VenvKeys(key).claim, VenvClaim("i-0gone", 0.0).encode())
    return key


def _phase(cloud: Cloud) -> bool:
    status = cloud.status()
    return status["status"] == "starting" and status["reason"] == "building environment"
