"""PyTorch Lightning on spot instances: checkpoint on SIGTERM, resume from checkpoints/last.ckpt.

    cd examples/lightning
    gridctl run --use_spot --auto_resume --gpus 1 train.py --lr "[0.01, 0.001]"

On AWS the node installs requirements.txt; locally, pip install -r requirements.txt first.
ModelCheckpoint saves checkpoints/last.ckpt every 100 steps and fit(ckpt_path="last")
continues from it (on the first attempt there is none and training starts from scratch).
Outside SLURM, Lightning stops on SIGTERM without saving anything (only its SLURM plugin
saves, on the requeue signal), so the script catches SIGTERM itself. The handler only sets a
flag, because a signal can arrive halfway through an optimizer step; the callback saves and
stops at the next batch boundary. On several nodes (`gridctl run --nodes 2 ...`, which sets
PL_TRAINER_NUM_NODES) the ranks agree on the flag at every batch, so that all of them save
the same step and stop together; gridctl gives every rank rank 0's checkpoint on a resume.
"""

import argparse
import os
import signal

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class Regressor(LightningModule):
    def __init__(self, lr: float):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        if self.global_step % 100 == 0:
            print(f"epoch {self.current_epoch} step {self.global_step} loss {loss:.4f}", flush=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


class SaveOnSigterm(Callback):
    """On SIGTERM: save checkpoints/last.ckpt after the current batch, then stop."""

    def __init__(self):
        self.received = False
        self.stopped = False

    def on_train_start(self, trainer, pl_module):
        # Replaces Lightning's own handler, which on several nodes runs a collective inside
        # the signal handler and can deadlock the ranks.
        signal.signal(signal.SIGTERM, self.on_sigterm)

    def on_sigterm(self, signum, frame):
        self.received = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        # Any rank's SIGTERM stops every rank (a no-op with one process).
        received = trainer.strategy.reduce_boolean_decision(self.received, all=False)
        if received and not trainer.should_stop:
            trainer.save_checkpoint("checkpoints/last.ckpt")
            self.stopped = True
            print(f"SIGTERM: saved step {trainer.global_step}", flush=True)
            trainer.should_stop = True


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()

    # Random data, seeded so that a resumed attempt trains on the same data.
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(8192, 32, generator=generator)
    noise = 0.1 * torch.randn(8192, 1, generator=generator)
    y = x @ torch.randn(32, 1, generator=generator) + noise
    loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)

    # enable_version_counter=False: always overwrite last.ckpt, never add last-v1.ckpt.
    checkpoints = ModelCheckpoint(
        dirpath="checkpoints", save_last=True, every_n_train_steps=100, enable_version_counter=False
    )
    on_sigterm = SaveOnSigterm()
    trainer = Trainer(
        max_epochs=args.epochs,
        devices=1,
        callbacks=[checkpoints, on_sigterm],
        enable_progress_bar=False,
    )
    resumes = os.environ.get("GRIDCTL_RESUME_COUNT", "0")
    print(f"attempt {int(resumes) + 1}: lr {args.lr}", flush=True)
    model = Regressor(args.lr)
    trainer.fit(model, train_dataloaders=loader, ckpt_path="last")
    if on_sigterm.stopped:
        return  # interrupted: the next attempt continues from checkpoints/last.ckpt
    os.makedirs("out", exist_ok=True)
    torch.save(model.state_dict(), "out/model.pt")
    print(f"done at step {trainer.global_step}", flush=True)


if __name__ == "__main__":
    main()
