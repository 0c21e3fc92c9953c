"""Multi-node experiments (gangs) on the local backend, through the real ``gridctl run
--nodes 2``: real torch.distributed (gloo, CPU) and PyTorch Lightning across two local
nodes, a failing rank, interruption and resume, stop, an orphaned gang, and a gang that
waits whole for room."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import sys
from pathlib import Path

import psutil
import pytest
from scripts import RESUMABLE_EXAMPLE, RESUMED, SLOW_FIRST_ATTEMPT

ALL_REDUCE = """\
import datetime, json, os
import torch
import torch.distributed as dist

timeout = datetime.timedelta(seconds=60)
torchrun = "TORCHELASTIC_RUN_ID" in os.environ
if torchrun:  # torchrun told it everything: the rank, the world, where the master is
    dist.init_process_group(timeout=timeout)
else:  # once per node: gridctl's variables say which node this is
    dist.init_process_group("gloo", rank=int(os.environ["NODE_RANK"]), timeout=timeout,
                            world_size=int(os.environ["GRIDCTL_NUM_NODES"]))
rank = dist.get_rank()
total = torch.tensor([float(rank + 1)])
dist.all_reduce(total)
print(f"rank {rank} of {dist.get_world_size()}: sum {total.item()}", flush=True)
os.makedirs("out", exist_ok=True)
names = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "GRIDCTL_NODE_RANK", "GRIDCTL_NUM_NODES",
         "GRIDCTL_NODE_IPS", "GRIDCTL_GPUS_PER_NODE", "PL_TRAINER_NUM_NODES", "RANK",
         "WORLD_SIZE")
with open("out/result.json", "w") as f:
    json.dump({"rank": rank, "world": dist.get_world_size(), "sum": total.item(),
               "backend": dist.get_backend_config(), "torchrun": torchrun,
               "env": {name: os.environ.get(name) for name in names}}, f)
dist.destroy_process_group()
"""

LIGHTNING = """\
import datetime, json, os
import lightning as L
import torch
from lightning.pytorch.strategies import DDPStrategy
from torch.utils.data import DataLoader, TensorDataset


class Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.samples = 0

    def training_step(self, batch, _index):
        x, y = batch
        self.samples += len(x)
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


torch.manual_seed(0)
x = torch.randn(64, 4)
data = DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8)
model = Tiny()
# What strategy="ddp" names, with a bounded wait for the other node.
ddp = DDPStrategy(process_group_backend="gloo", timeout=datetime.timedelta(seconds=60))
trainer = L.Trainer(num_nodes=2, accelerator="cpu", devices=1, strategy=ddp, max_epochs=3,
                    logger=False, enable_checkpointing=False, enable_progress_bar=False,
                    enable_model_summary=False)
trainer.fit(model, data)
os.makedirs("out", exist_ok=True)
with open("out/result.json", "w") as f:
    json.dump({"global_rank": trainer.global_rank, "world_size": trainer.world_size,
               "node_rank": trainer.node_rank, "epochs": trainer.current_epoch,
               "samples": model.samples,
               "environment": type(trainer.strategy.cluster_environment).__name__,
               "backend": torch.distributed.get_backend(),
               "weights": model.layer.weight.detach().flatten().tolist()}, f)
print(f"trained: global rank {trainer.global_rank}", flush=True)
"""

FAILING_PEER = """\
import os, pathlib, signal, sys, time

rank = int(os.environ["GRIDCTL_NODE_RANK"])
started = pathlib.Path(sys.argv[1])
if rank == 0:
    def on_term(signum, frame):
        print("rank 0: SIGTERM", flush=True)
        sys.exit(143)
    signal.signal(signal.SIGTERM, on_term)
    print("rank 0: sleeping", flush=True)
    started.touch()
    time.sleep(600)
else:
    while not started.exists():  # fail only once the peer is well under way
        time.sleep(0.05)
    print("rank 1: failing", flush=True)
    sys.exit(3)
"""

SLEEPER = """\
import os, time
print(f"node {os.environ['GRIDCTL_NODE_RANK']} pid {os.getpid()}", flush=True)
time.sleep(600)
"""

HOLDER = """\
import pathlib, sys, time
while not pathlib.Path(sys.argv[1]).exists():
    time.sleep(0.05)
"""

QUICK = "print('done')\n"

PID = re.compile(r"node (\d) pid (\d+)")


@pytest.fixture
def venv_python(gridctl) -> None:
    """Scripts run with the ``python`` of the user's PATH: here this venv's, where ``make
    install`` put torch and lightning (dev extras). Missing, they fail the test."""
    for module in ("torch", "lightning"):
        if importlib.util.find_spec(module) is None:
            pytest.fail(f"{module} is not installed: it is a dev extra (make install)")
    path = gridctl.env.get("PATH", "")
    gridctl.env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{path}"


def ended(gridctl, run: str) -> bool:
    return gridctl.status(run)["status"] not in ("queued", "running")


def node_log(gridctl, experiment: str, rank: int) -> str:
    result = gridctl("logs", experiment, "--node", str(rank))
    assert result.returncode == 0, result.stderr
    return result.stdout


def artifacts(gridctl, run: str, dest: Path) -> Path:
    result = gridctl("artifacts", run, "--dest", str(dest))
    assert result.returncode == 0, result.stderr
    return dest / f"{run}-exp0"


def results(root: Path) -> list[dict]:
    """Each rank's out/result.json: rank 0's are the experiment's, rank 1's under node-1/."""
    return [json.loads((root / sub / "out" / "result.json").read_text()) for sub in ("", "node-1")]


def run_gang(gridctl, name: str, *args: str) -> None:
    result = gridctl("run", "--name", name, "--nodes", "2", *args)
    assert result.returncode == 0, result.stderr


def pids(gridctl, experiment: str) -> list[int]:
    """The pid each rank's sleeper printed, by rank (empty until both have)."""
    found = {}
    for rank in (0, 1):
        match = PID.search(node_log(gridctl, experiment, rank))
        if match:
            found[int(match.group(1))] = int(match.group(2))
    return [found[0], found[1]] if len(found) == 2 else []


@pytest.mark.parametrize(
    "launch", [(), ("--framework", "torch")], ids=["once-per-node", "torchrun"]
)
def test_a_gloo_all_reduce_spans_two_local_nodes(gridctl, project, venv_python, tmp_path, launch):
    (project / "allreduce.py").write_text(ALL_REDUCE)
    run_gang(gridctl, "ar", *launch, "allreduce.py")
    gridctl.wait_until(lambda: ended(gridctl, "ar"), timeout=120)
    (experiment,) = gridctl.status("ar")["experiments"]
    assert (experiment["status"], experiment["exit_code"]) == ("succeeded", 0), experiment
    assert experiment["nodes"] == 2
    first, second = results(artifacts(gridctl, "ar", tmp_path / "artifacts"))
    assert [first["rank"], second["rank"]] == [0, 1]
    assert first["sum"] == second["sum"] == 3.0  # 1 + 2: each saw the other's tensor
    assert "gloo" in first["backend"]
    assert first["torchrun"] == second["torchrun"] == bool(launch)
    for rank, env in enumerate([first["env"], second["env"]]):
        assert env["MASTER_ADDR"] == "127.0.0.1"
        assert env["MASTER_PORT"] == first["env"]["MASTER_PORT"]
        assert env["NODE_RANK"] == env["GRIDCTL_NODE_RANK"] == str(rank)
        assert env["GRIDCTL_NUM_NODES"] == env["PL_TRAINER_NUM_NODES"] == "2"
        assert env["GRIDCTL_NODE_IPS"] == "127.0.0.1\n127.0.0.1"
        assert env["GRIDCTL_GPUS_PER_NODE"] == "0"
        # torchrun gives each process its global rank; nothing else does.
        assert env["RANK"] == (str(rank) if launch else None)
    assert "rank 0 of 2: sum 3.0" in gridctl("logs", "ar-exp0").stdout
    second_log = node_log(gridctl, "ar-exp0", 1)
    assert "rank 1 of 2: sum 3.0" in second_log
    assert "rank 0 of 2" not in second_log


def test_lightning_trains_a_tiny_model_on_two_local_nodes(gridctl, project, venv_python, tmp_path):
    (project / "train.py").write_text(LIGHTNING)
    run_gang(gridctl, "pl", "train.py")
    gridctl.wait_until(lambda: ended(gridctl, "pl"), timeout=120)
    (experiment,) = gridctl.status("pl")["experiments"]
    assert (experiment["status"], experiment["exit_code"]) == ("succeeded", 0), experiment
    first, second = results(artifacts(gridctl, "pl", tmp_path / "artifacts"))
    assert [first["global_rank"], second["global_rank"]] == [0, 1]
    assert [first["node_rank"], second["node_rank"]] == [0, 1]
    assert first["world_size"] == second["world_size"] == 2
    assert first["environment"] == "LightningEnvironment"  # not taken for torchelastic/SLURM
    assert first["backend"] == "gloo"
    assert first["epochs"] == second["epochs"] == 3
    # The sampler split the 64 samples between the nodes, and DDP kept the weights equal.
    assert first["samples"] == second["samples"] == 3 * 64 // 2
    assert first["weights"] == second["weights"]
    assert "trained: global rank 1" in node_log(gridctl, "pl-exp0", 1)


def test_a_failing_rank_stops_the_other_and_fails_the_gang_with_its_code(
    gridctl, project, tmp_path
):
    (project / "peer.py").write_text(FAILING_PEER)
    run_gang(gridctl, "fail", "peer.py", str(tmp_path / "rank0-started"))
    # Rank 0 would sleep for ten minutes: the gang ends because rank 1 failed.
    gridctl.wait_until(lambda: ended(gridctl, "fail"), timeout=60)
    (experiment,) = gridctl.status("fail")["experiments"]
    assert (experiment["status"], experiment["exit_code"]) == ("failed", 3)
    assert experiment["reason"] == "node 1: exit code 3"
    assert "rank 0: SIGTERM" in node_log(gridctl, "fail-exp0", 0)
    assert "rank 1: failing" in node_log(gridctl, "fail-exp0", 1)


def test_an_interrupted_gang_resumes_every_rank_from_its_own_checkpoint(gridctl, project, tmp_path):
    shutil.copy(RESUMABLE_EXAMPLE, project / "example.py")
    (project / "train.py").write_text(SLOW_FIRST_ATTEMPT)
    args = ("--steps", "80", "--step-seconds", "0.1", "--lr", "0.5")
    run_gang(gridctl, "res", "--auto_resume", "train.py", *args)

    def steps(rank: int) -> int:
        found = re.findall(r"Z step (\d+)$", node_log(gridctl, "res-exp0", rank), re.MULTILINE)
        return int(found[-1]) if found else 0

    gridctl.wait_until(lambda: steps(0) >= 10 and steps(1) >= 10)
    sent = gridctl("interrupt", "res-exp0", "--window", "30")
    assert sent.returncode == 0, sent.stderr
    gridctl.wait_until(lambda: ended(gridctl, "res"), timeout=120)
    (experiment,) = gridctl.status("res")["experiments"]
    assert (experiment["status"], experiment["resumes"]) == ("succeeded", 1), experiment
    first, second = experiment["attempts"]
    assert (first["status"], first["reason"]) == ("interrupted", "interrupted by gridctl interrupt")
    assert second["status"] == "succeeded"
    for rank in (0, 1):
        log = node_log(gridctl, "res-exp0", rank)
        assert "SIGTERM: saved step" in log  # every rank was told, and saved
        resumed = RESUMED.search(log)
        assert resumed is not None and int(resumed.group(1)) >= 10  # its own checkpoint
    for result in results(artifacts(gridctl, "res", tmp_path / "artifacts")):
        assert (result["steps"], result["resumes"]) == (80, 1)
        assert result["loss"] == pytest.approx(1.5**-80)  # every step ran exactly once


def test_stop_ends_every_rank(gridctl, project):
    (project / "sleeper.py").write_text(SLEEPER)
    run_gang(gridctl, "halt", "sleeper.py")
    gridctl.wait_until(lambda: pids(gridctl, "halt-exp0"))
    scripts = pids(gridctl, "halt-exp0")
    assert gridctl("stop", "halt").returncode == 0
    (experiment,) = gridctl.status("halt")["experiments"]
    assert (experiment["status"], experiment["reason"]) == ("stopped", "stopped by user")
    gridctl.wait_until(lambda: not any(psutil.pid_exists(pid) for pid in scripts))


def test_an_orphaned_gang_has_every_rank_ended(gridctl, project):
    (project / "sleeper.py").write_text(SLEEPER)
    run_gang(gridctl, "orphan", "sleeper.py")
    gridctl.wait_until(lambda: pids(gridctl, "orphan-exp0"))
    scripts = pids(gridctl, "orphan-exp0")
    (agent,) = [
        p
        for p in psutil.process_iter(["cmdline"])
        if "gridctl.agent" in (p.info["cmdline"] or []) and str(gridctl.home) in p.info["cmdline"]
    ]
    agent.send_signal(signal.SIGKILL)
    agent.wait(30)
    # The next gridctl call finds the gang orphaned: both ranks' scripts go with it.
    (experiment,) = gridctl.status("orphan")["experiments"]
    assert experiment["status"] == "failed"
    assert "ended unexpectedly" in experiment["reason"]
    gridctl.wait_until(lambda: not any(psutil.pid_exists(pid) for pid in scripts))


def test_a_gang_waits_whole_and_later_experiments_wait_behind_it(gridctl, project, tmp_path):
    """One core is free: too few for the gang's two nodes, enough for the experiment queued
    after it, which must not take it (the gang would wait for as long as such experiments
    keep coming)."""
    cores = os.cpu_count() or 1
    assert cores >= 2, "a gang of two one-CPU nodes needs two cores"
    release = tmp_path / "release"
    (project / "hold.py").write_text(HOLDER)
    (project / "quick.py").write_text(QUICK)
    held = gridctl("run", "--name", "big", "--cpus", str(cores - 1), "hold.py", str(release))
    assert held.returncode == 0, held.stderr
    gridctl.wait_until(lambda: gridctl.experiment("big", "big-exp0")["status"] == "running")
    run_gang(gridctl, "gang", "--cpus", "1", "quick.py")
    small = gridctl("run", "--name", "small", "--cpus", "1", "quick.py")
    assert small.returncode == 0, small.stderr

    def reason(run: str) -> str | None:
        return gridctl.experiment(run, f"{run}-exp0")["reason"]

    gridctl.wait_until(
        lambda: (
            reason("gang") == f"waiting for 2 x 1 CPU: 1 of {cores} free"
            and reason("small")
            == "waiting behind gang-exp0: a gang that waits for room starts first"
        )
    )
    assert gridctl.experiment("small", "small-exp0")["status"] == "queued"
    release.touch()
    gridctl.wait_until(lambda: ended(gridctl, "gang") and ended(gridctl, "small"), timeout=60)
    gang = gridctl.experiment("gang", "gang-exp0")
    later = gridctl.experiment("small", "small-exp0")
    assert gang["status"] == later["status"] == "succeeded"
    assert gang["attempts"][0]["started_at"] <= later["attempts"][0]["started_at"]
