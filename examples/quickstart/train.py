"""A tiny training script: fits y = 3x + 1 by gradient descent and saves its metrics
(outputs/metrics.jsonl, one line per epoch, is what gridctl ui charts).

Run it directly (python train.py --lr 0.1) or as a sweep (gridctl run train.py --lr "[0.1, 0.01]").
"""

import argparse
import json
import os
import random

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.05)
parser.add_argument("--epochs", type=int, default=20)
args = parser.parse_args()

rng = random.Random(0)
data = [(x, 3 * x + 1 + rng.gauss(0, 0.1)) for x in (rng.uniform(-1, 1) for _ in range(200))]
w = b = 0.0
os.makedirs("outputs", exist_ok=True)
with open("outputs/metrics.jsonl", "w") as log:
    for epoch in range(args.epochs):
        grad_w = sum(2 * (w * x + b - y) * x for x, y in data) / len(data)
        grad_b = sum(2 * (w * x + b - y) for x, y in data) / len(data)
        w, b = w - args.lr * grad_w, b - args.lr * grad_b
        loss = sum((w * x + b - y) ** 2 for x, y in data) / len(data)
        print(f"epoch {epoch} loss {loss:.4f}")
        log.write(json.dumps({"step": epoch, "loss": loss, "w": w, "b": b}) + "\n")

with open("outputs/metrics.json", "w") as f:
    json.dump({"lr": args.lr, "epochs": args.epochs, "loss": loss, "w": w, "b": b}, f)
