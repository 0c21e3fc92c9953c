"""The command line's side of a multi-node experiment on AWS (SPEC section 9), with no node
agent running: the vCPU quota counts a gang's instances and refuses a gang that could never
start whole, the bucket's specs carry its node count, and ``interrupt --node`` and
``logs --node`` reach rank R. What the nodes then do is tested with simulated nodes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import Gridctl

from gridctl.agent.core.contract import ExperimentKeys, InterruptRequest, StatusRecord
from gridctl.agent.core.state import Attempt, State

from .cloud import client, first_bucket
from .service_quotas import ServiceQuotas
from .test_aws_capacity import error_line

pytestmark = pytest.mark.e2e

G_SPOT = "L-3819A6DF"
STANDARD = "L-1216C47A"


@pytest.fixture
def service_quotas():
    with ServiceQuotas() as stub:
        yield stub


def test_a_multi_node_run_from_the_command_line(
    cloud: Gridctl, aws_env, ami, project: Path, service_quotas: ServiceQuotas
):
    cloud.env["AWS_ENDPOINT_URL_SERVICE_QUOTAS"] = service_quotas.url
    assert cloud("up", "--ami", ami, timeout=600).returncode == 0
    (project / "train.py").write_text("print('trained')\n")
    pairs = ("run", "--use_spot", "--instance_type", "1_t4_16gb", "--gpus", "2", "--dry-run")

    # Room for one g4dn.xlarge but not two: a gang of two would never start.
    service_quotas.applied[G_SPOT] = 4
    refused = error_line(cloud(*pairs, "train.py"))
    for part in (
        f"{G_SPOT} (All G and VT Spot Instance Requests) in us-east-1 is 4 vCPUs",
        "one experiment's 2 nodes (g4dn.xlarge), which start together, need 8",
        f"--quota-code {G_SPOT} --desired-value 8",
    ):
        assert part in refused, refused
    # Room for one gang of two: the second experiment's gang waits, and instances are counted.
    service_quotas.applied[G_SPOT] = 8
    warned = cloud(*pairs, "--output", "json", "train.py", "--lr", "[1, 2]")
    assert warned.returncode == 0, warned.stderr
    assert "is 8 vCPUs: only 2 of this run's 4 machines" in warned.stderr
    assert f"--quota-code {G_SPOT} --desired-value 16" in warned.stderr
    assert [e["nodes"] for e in json.loads(warned.stdout)["experiments"]] == [2, 2]
    assert cloud.json("status") == []

    service_quotas.applied[STANDARD] = 64
    run = cloud(
        "run", "--name", "pair", "--nodes", "2", "--framework", "torch", "train.py", timeout=600
    )
    assert run.returncode == 0, run.stderr
    s3, bucket = client(aws_env, "s3"), first_bucket(aws_env)
    keys = ExperimentKeys("pair", "pair-exp0")

    def stored(key: str) -> dict:
        return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    machine = stored("runs/pair/machines/pair-exp0.json")
    assert (machine["experiments"], machine["nodes"]) == (["pair-exp0"], 2)
    spec = stored(keys.spec)
    assert (spec["nodes"], spec["framework"]) == (2, "torch")
    assert cloud.status("pair")["experiments"][0]["nodes"] == 2

    # What a gang's rank 0 writes once the gang resumed once: its one status.
    now = time.time()
    first = Attempt("i-0rank0", now - 60, now - 30, State.INTERRUPTED)
    record = StatusRecord(
        status=State.RUNNING, instance="i-0rank0", started_at=now, heartbeat_at=now, resumes=1,
        attempts=(first, Attempt("i-0rank0", now)),
    )  # fmt: skip
    s3.put_object(Bucket=bucket, Key=keys.status, Body=record.to_json())
    for rank, text in enumerate(("rank zero\n", "rank one\n")):
        s3.put_object(Bucket=bucket, Key=keys.log_of(rank), Body=text.encode())

    too_far = cloud("interrupt", "pair-exp0", "--node", "2")
    assert error_line(too_far) == "gridctl: error: --node 2: pair-exp0 spans 2 nodes, ranks 0 to 1"
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix=keys.interrupt)
    sent = cloud("interrupt", "pair-exp0", "--node", "1", "--window", "30")
    assert sent.returncode == 0, sent.stderr
    request = InterruptRequest.decode(
        s3.get_object(Bucket=bucket, Key=keys.interrupt)["Body"].read()
    )
    assert (request.window, request.node, request.attempt) == (30.0, 1, 1)
    assert request.requested_at is not None and request.requested_at >= now

    assert cloud("logs", "pair-exp0").stdout == "rank zero\n"
    assert cloud("logs", "pair", "--node", "1").stdout == "rank one\n"
    assert error_line(cloud("logs", "pair-exp0", "--node", "2")).endswith("ranks 0 to 1")
