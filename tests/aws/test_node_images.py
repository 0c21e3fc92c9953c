"""``--image`` on a node: the real agent on a simulated instance (single_node.py) logs in to
ECR with its role (moto answers ``GetAuthorizationToken``), pulls, and runs the script in the
image, through a stand-in docker CLI (fakedocker.py): there is no docker daemon here."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import boto3
import pytest
from fakedocker import install

from .single_node import REGION, Cloud, log_of

ECR_HOST = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
ECR_IMAGE = f"{ECR_HOST}/train:1"
TRAIN = """\
import os
print("in the image as", os.getuid(), flush=True)
open("out.txt", "w").write("written in the container")
"""


@pytest.fixture
def cloud(single_node: Cloud) -> Cloud:
    return single_node


def password_from(moto: str) -> str:
    """The password moto's token holds (what the agent should have been given)."""
    ecr = boto3.client("ecr", region_name=REGION, endpoint_url=moto)
    (data,) = ecr.get_authorization_token()["authorizationData"]
    return base64.b64decode(data["authorizationToken"]).decode().partition(":")[2]


def test_a_node_logs_in_to_ecr_with_its_role_pulls_and_runs_the_image(
    cloud: Cloud, project: Path, tmp_path: Path
):
    docker = install(tmp_path / "docker")
    cloud.deploy({"train.py": TRAIN}, ("python", "train.py"), project, image=ECR_IMAGE)
    path = f"{docker.bin_dir}{os.pathsep}{os.environ['PATH']}"
    code, output = cloud.run_agent(PATH=path)
    assert code == 0, output
    assert cloud.status()["status"] == "succeeded", log_of(cloud).decode()
    assert cloud.artifact("out.txt") == b"written in the container"

    (login,) = docker.calls("login")
    assert login["argv"] == ["login", "--username", "AWS", "--password-stdin", ECR_HOST]
    password = password_from(cloud.moto)
    assert login["stdin"] == password
    assert not any(password in " ".join(call["argv"]) for call in docker.calls())
    # The node's logins are its own, not in the agent's home.
    config = str(cloud.root / "opt" / "gridctl" / "docker")
    assert {call["env"].get("DOCKER_CONFIG") for call in docker.calls()} == {config}
    assert [call["argv"][0] for call in docker.calls()] == ["image", "login", "pull", "run"]
    log = log_of(cloud).decode()
    assert f"logged in to {ECR_HOST} with the instance role" in log
    assert f"pulled {ECR_IMAGE} in " in log
    assert "in the image as" in log


def test_a_public_image_needs_no_login(cloud: Cloud, project: Path, tmp_path: Path):
    docker = install(tmp_path / "docker")
    cloud.deploy({"train.py": TRAIN}, ("python", "train.py"), project, image="busybox")
    path = f"{docker.bin_dir}{os.pathsep}{os.environ['PATH']}"
    code, output = cloud.run_agent(PATH=path)
    assert code == 0, output
    assert cloud.status()["status"] == "succeeded", log_of(cloud).decode()
    assert [call["argv"][0] for call in docker.calls()] == ["image", "pull", "run"]


def test_a_node_without_docker_fails_the_experiment_with_its_reason(
    cloud: Cloud, project: Path, tmp_path: Path
):
    empty = tmp_path / "empty"
    empty.mkdir()
    cloud.deploy({"train.py": TRAIN}, ("python", "train.py"), project, image=ECR_IMAGE)
    code, output = cloud.run_agent(PATH=str(empty))
    assert code == 0, output
    status = cloud.status()
    assert status["status"] == "failed"
    assert status["exit_code"] is None
    assert status["reason"] == (
        "could not prepare the experiment: docker is not installed on this machine"
        " (--image needs it)"
    )
