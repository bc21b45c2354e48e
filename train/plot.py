"""Plots `out/loss.csv` (training and held-out loss against tokens seen) to docs/."""

import csv
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

HERE = pathlib.Path(__file__).resolve().parent

rows = list(csv.DictReader(open(HERE / "out" / "loss.csv")))
tokens = [int(r["tokens"]) / 1e6 for r in rows]
fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
ax.plot(tokens, [float(r["train_loss"]) for r in rows], label="training (mean over the last 100 steps)")
ax.plot(tokens, [float(r["valid_loss"]) for r in rows], label="held-out split", marker="o", markersize=3)
ax.set_xlabel("tokens seen (millions; one epoch is 1.56 M)")
ax.set_ylabel("cross-entropy (nats per token)")
ax.set_title("BitNet tiny on the Brown corpus: ternary weights, int8 activations")
ax.grid(alpha=0.3)
ax.legend()
fig.tight_layout()
fig.savefig(HERE.parent / "docs" / "training-loss.png")
print(f"final held-out loss {rows[-1]['valid_loss']} after {rows[-1]['seconds']} s")
