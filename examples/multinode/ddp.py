"""Data-parallel training on several nodes with plain PyTorch, resumable on spot.

    gridctl run --nodes 2 --framework torch --auto_resume ddp.py --steps 300   # locally
    gridctl run --cloud aws --use_spot --auto_resume --instance_type 4_v100_16gb --gpus 8 \\
        --framework torch ddp.py --steps 3000                              # 2 nodes x 4 GPUs

torchrun (started by gridctl with --framework torch) gives every process RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR and MASTER_PORT, so init_process_group() needs no arguments. Rank 0
saves checkpoints/last.pt; on a resume gridctl gives every node rank 0's files, so every
rank loads the same step. On SIGTERM (a spot notice on any node reaches every node) the
ranks agree at the next step, save once and stop together.
"""

import argparse
import os
import signal
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

CKPT = "checkpoints/last.pt"


def save(state: dict) -> None:
    os.makedirs("checkpoints", exist_ok=True)
    torch.save(state, CKPT + ".tmp")
    os.replace(CKPT + ".tmp", CKPT)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=0.05)
    args = parser.parse_args()

    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(minutes=5))
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", int(os.environ["LOCAL_RANK"])) if cuda else torch.device("cpu")
    received = torch.zeros(1, device=device)
    signal.signal(signal.SIGTERM, lambda *_: received.fill_(1))

    torch.manual_seed(0)
    model = DistributedDataParallel(nn.Linear(16, 1).to(device))
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    step = 0
    if os.path.exists(CKPT):
        state = torch.load(CKPT, map_location=device)
        model.module.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step = state["step"]
        print(f"rank {rank}: resumed at step {step}", flush=True)

    target = torch.randn(16, 1, generator=torch.Generator().manual_seed(1)).to(device)
    while step < args.steps:
        x = torch.randn(64, 16, device=device)
        loss = nn.functional.mse_loss(model(x), x @ target)
        optimizer.zero_grad()
        loss.backward()  # DDP averages the gradients of all ranks here
        optimizer.step()
        step += 1
        stop = received.clone()
        dist.all_reduce(stop)  # any rank's SIGTERM stops every rank at this step
        if stop.item() or step % 100 == 0:
            if rank == 0:
                state = {"model": model.module.state_dict(), "step": step}
                save({**state, "optimizer": optimizer.state_dict()})
            dist.barrier()
        if stop.item():
            print(f"rank {rank}: SIGTERM, saved step {step}", flush=True)
            break
        if step % 100 == 0:
            print(f"rank {rank}/{world}: step {step} loss {loss.item():.4f}", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
