"""Trains the tiny bitnet-b1.58 model on the Brown corpus (run `prepare.py` first).

Quantization-aware from the first step (see `model.py`): the latent weights are f32,
the forward pass sees only ternary weights and int8 activations. AdamW with a linear
warm-up and a cosine decay, gradient clipping at 1, weight decay on the matrices only.
Every `--eval-every` steps the loss on a fixed set of held-out windows is logged.

Writes to `train/out/`: `loss.csv` (step, tokens seen, train loss, held-out loss,
seconds), `checkpoint.safetensors` (the latent weights under GGUF tensor names, f32)
and `config.json`. `bitnet import` turns them into GGUF files.
"""

import argparse
import json
import pathlib
import struct
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tokenizers import Tokenizer

from model import Config, forward, init, linear_shapes, loss, norm_sizes

HERE = pathlib.Path(__file__).resolve().parent


def token_stream(tok: Tokenizer, path: pathlib.Path) -> np.ndarray:
    eot = tok.token_to_id("<|endoftext|>")
    ids: list[int] = []
    # Documents are separated by a blank line; the model sees <|endoftext|> between them.
    for doc in path.read_text(encoding="utf-8").split("\n\n"):
        ids.extend(tok.encode(doc.strip("\n")).ids)
        ids.append(eot)
    return np.asarray(ids, dtype=np.int32)


def gguf_tensors(c: Config, params) -> dict[str, np.ndarray]:
    """The latent weights under the engine's (llama.cpp's) tensor names."""
    out = {
        "token_embd.weight": np.asarray(params["token_embd"], np.float32),
        "output_norm.weight": np.asarray(params["output_norm"], np.float32),
    }
    for name in list(linear_shapes(c)) + list(norm_sizes(c)):
        for layer in range(c.n_layer):
            out[f"blk.{layer}.{name}.weight"] = np.asarray(params[name][layer], np.float32)
    return out


def save_safetensors(path: pathlib.Path, tensors: dict[str, np.ndarray]) -> None:
    """The safetensors layout: u64 header length, JSON header, then the raw data."""
    header, offset, blobs = {}, 0, []
    for name, a in tensors.items():
        data = np.ascontiguousarray(a, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head)
        for b in blobs:
            f.write(b)
    tmp.replace(path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=pathlib.Path, default=HERE / "out")
    args = ap.parse_args()

    tok = Tokenizer.from_file(str(args.out / "tokenizer.json"))
    c = Config(n_vocab=tok.get_vocab_size(), n_layer=args.layers)
    train = token_stream(tok, args.out / "train.txt")
    valid = token_stream(tok, args.out / "valid.txt")
    w = c.n_ctx + 1
    held_out = np.stack([valid[i : i + w] for i in range(0, len(valid) - w, w)][: 20 * args.batch])

    params = init(c, jax.random.PRNGKey(args.seed))
    schedule = optax.warmup_cosine_decay_schedule(0.0, args.lr, args.warmup, args.steps, args.lr / 10)
    decay_mask = jax.tree_util.tree_map(lambda p: p.ndim == 3, params)
    opt = optax.chain(
        optax.clip_by_global_norm(1.0),
        optax.adamw(schedule, b1=0.9, b2=0.95, weight_decay=0.1, mask=decay_mask),
    )
    state = opt.init(params)

    @jax.jit
    def step(params, state, batch):
        value, grads = jax.value_and_grad(lambda p: loss(c, p, batch))(params)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value

    @jax.jit
    def eval_loss(params, batch):
        return loss(c, params, batch)

    def held_out_loss(params) -> float:
        chunks = [held_out[i : i + args.batch] for i in range(0, len(held_out), args.batch)]
        return float(np.mean([eval_loss(params, jnp.asarray(b)) for b in chunks]))

    rng = np.random.default_rng(args.seed)
    log = open(args.out / "loss.csv", "w")
    log.write("step,tokens,train_loss,valid_loss,seconds\n")
    t0, recent = time.time(), []
    print(f"{len(train)} training tokens, {held_out.size} held-out tokens, {args.steps} steps")
    for i in range(1, args.steps + 1):
        starts = rng.integers(0, len(train) - w, args.batch)
        batch = jnp.asarray(np.stack([train[s : s + w] for s in starts]))
        params, state, value = step(params, state, batch)
        recent.append(float(value))
        if i % args.eval_every == 0 or i == args.steps:
            v = held_out_loss(params)
            row = f"{i},{i * args.batch * c.n_ctx},{np.mean(recent):.4f},{v:.4f},{time.time() - t0:.0f}"
            log.write(row + "\n")
            log.flush()
            print(row, flush=True)
            recent = []
            save_safetensors(args.out / "checkpoint.safetensors", gguf_tensors(c, params))
            (args.out / "config.json").write_text(json.dumps(c.to_dict(), indent=1) + "\n")


if __name__ == "__main__":
    main()
