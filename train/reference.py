"""An independent float64 forward pass of the trained model, for the engine's tests.

It shares no code with the engine or with `model.py`: it reads the latent weights from
`checkpoint.safetensors`, quantizes them itself (absmean ternary, scale rounded to f16;
embedding rounded to f16, as the GGUF stores it), tokenizes with Hugging Face
`tokenizers`, and runs the bitnet-b1.58 forward pass in numpy float64, with the per-token
absmax int8 activations of the engine's default path (round half to even) or without
them ("exact", the engine's f32 mode). It writes into `tests/fixtures/`:

- `brown-tiny.ref.json`: for a few held-out prompts, the prompt ids, the reference's
  greedy continuation (int8 path) and its smallest top-1/top-2 logit margin; the
  perplexity of `brown-valid-head.txt` by llama.cpp's method at ctx 128 (exact, int8);
- `brown-tiny.ref-int8.npy`, `brown-tiny.ref-exact.npy`: the logits of every row of the
  first prompt plus its continuation [rows, n_vocab], f32.
"""

import json
import pathlib
import struct

import numpy as np
from tokenizers import Tokenizer

HERE = pathlib.Path(__file__).resolve().parent
FIXTURES = HERE.parent / "tests" / "fixtures"
# Openings in the style of the held-out genres. A float32 engine and this float64
# reference may differ by up to TOLERANCE in a logit, so a greedy step whose top two
# logits are closer than 2·TOLERANCE may legitimately go either way: each case pins the
# continuation up to its first such step (`clear_ids`), and a prompt whose clear part is
# shorter than MIN_CLEAR tokens is passed over.
CANDIDATES = [
    "The committee said that",
    "In the morning, the",
    "He looked at her and",
    "The new program will",
    "It is clear that the",
    "The city council",
    "She said that she",
    "The president of the",
    "There is no doubt that",
    "When the war was over,",
    "The church",
    "For the first time",
]
N_CASES = 4
TOLERANCE = 2e-2
MIN_CLEAR = 8
N_GREEDY = 24
PPL_CTX = 128


def read_safetensors(path):
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    data = raw[8 + n :]
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        a, b = e["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype="<f4").reshape(e["shape"]).astype(np.float64)
    return out


def ternary(w):
    s = float(np.float16(np.mean(np.abs(w))))
    return np.clip(np.round(w / s), -1, 1) * s


class Model:
    def __init__(self, out_dir):
        self.c = json.loads((out_dir / "config.json").read_text())
        t = read_safetensors(out_dir / "checkpoint.safetensors")
        self.embd = t["token_embd.weight"].astype(np.float16).astype(np.float64)
        self.out_norm = t["output_norm.weight"]
        self.layers = []
        for l in range(self.c["n_layer"]):
            p = {}
            for name in ("attn_norm", "attn_sub_norm", "ffn_norm", "ffn_sub_norm"):
                p[name] = t[f"blk.{l}.{name}.weight"]
            for name in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"):
                p[name] = ternary(t[f"blk.{l}.{name}.weight"])
            self.layers.append(p)

    def rms(self, x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.c["rms_eps"]) * w

    def linear(self, x, w, int8):
        if int8:
            m = np.max(np.abs(x), axis=-1, keepdims=True)
            scale = np.where(m > 0, 127.0 / np.where(m > 0, m, 1), 0)
            q = np.clip(np.round(x * scale), -128, 127)
            x = np.where(m > 0, q / np.where(scale > 0, scale, 1), 0)
        return x @ w.T

    def rope(self, x):
        # x: [T, H, d]; NeoX pairs (i, i + d/2), angle pos·θ^(−2i/d).
        T, _, d = x.shape
        half = d // 2
        freq = self.c["rope_theta"] ** (-2.0 * np.arange(half) / d)
        ang = np.arange(T)[:, None] * freq[None, :]
        cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        a, b = x[..., :half], x[..., half:]
        return np.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1)

    def logits(self, ids, int8):
        c = self.c
        hd = c["n_embd"] // c["n_head"]
        T = len(ids)
        h = self.embd[ids]
        causal = np.tril(np.ones((T, T), bool))
        for p in self.layers:
            x = self.rms(h, p["attn_norm"])
            q = self.linear(x, p["attn_q"], int8).reshape(T, c["n_head"], hd)
            k = self.linear(x, p["attn_k"], int8).reshape(T, c["n_head_kv"], hd)
            v = self.linear(x, p["attn_v"], int8).reshape(T, c["n_head_kv"], hd)
            q, k = self.rope(q), self.rope(k)
            group = c["n_head"] // c["n_head_kv"]
            heads = []
            for hh in range(c["n_head"]):
                s = q[:, hh] @ k[:, hh // group].T / np.sqrt(hd)
                s = np.where(causal, s, -np.inf)
                s = np.exp(s - s.max(axis=-1, keepdims=True))
                heads.append((s / s.sum(axis=-1, keepdims=True)) @ v[:, hh // group])
            a = self.rms(np.concatenate(heads, axis=-1), p["attn_sub_norm"])
            h = h + self.linear(a, p["attn_output"], int8)
            x = self.rms(h, p["ffn_norm"])
            g = self.linear(x, p["ffn_gate"], int8)
            m = np.square(np.maximum(g, 0)) * self.linear(x, p["ffn_up"], int8)
            h = h + self.linear(self.rms(m, p["ffn_sub_norm"]), p["ffn_down"], int8)
        return self.rms(h, self.out_norm) @ self.embd.T


def greedy(model, ids, n, eot):
    """The greedy continuation and each step's top-1/top-2 logit margin."""
    ids, margins = list(ids), []
    for _ in range(n):
        row = model.logits(np.array(ids), int8=True)[-1]
        top2 = np.sort(row)[-2:]
        margins.append(float(top2[1] - top2[0]))
        nxt = int(np.argmax(row))
        ids.append(nxt)
        if nxt == eot:
            break
    return ids, margins


def perplexity(model, ids, ctx, bos, int8):
    nll = []
    for w in range(len(ids) // ctx):
        window = list(ids[w * ctx : (w + 1) * ctx])
        window[0] = bos
        lg = model.logits(np.array(window), int8)
        for i in range(ctx // 2, ctx - 1):
            row = lg[i] - lg[i].max()
            nll.append(np.log(np.exp(row).sum()) - row[ids[w * ctx + i + 1]])
    return float(np.exp(np.mean(nll))), len(nll)


def main():
    out = HERE / "out"
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    eot = tok.token_to_id("<|endoftext|>")
    model = Model(out)
    cases = []
    for text in CANDIDATES:
        if len(cases) == N_CASES:
            break
        prompt = [eot] + tok.encode(text).ids
        ids, margins = greedy(model, prompt, N_GREEDY, eot)
        out_ids = ids[len(prompt) :]
        clear = next((i for i, m in enumerate(margins) if m < 2 * TOLERANCE), len(margins))
        print(text, "->", repr(tok.decode(out_ids)), f"(clear for {clear} tokens)")
        if clear < MIN_CLEAR:
            continue
        cases.append(
            {
                "prompt": text,
                "prompt_ids": prompt,
                "greedy_ids": out_ids,
                "greedy_text": tok.decode(out_ids),
                "margins": margins,
                "clear_ids": out_ids[:clear],
                "clear_text": tok.decode(out_ids[:clear]),
            }
        )
    first = cases[0]["prompt_ids"] + cases[0]["greedy_ids"]
    for mode, int8 in (("int8", True), ("exact", False)):
        np.save(FIXTURES / f"brown-tiny.ref-{mode}.npy", model.logits(np.array(first), int8).astype(np.float32))
    head = (FIXTURES / "brown-valid-head.txt").read_text(encoding="utf-8")
    ids = [eot] + tok.encode(head).ids
    ppl = {}
    for mode, int8 in (("int8", True), ("exact", False)):
        ppl[mode], scored = perplexity(model, ids, PPL_CTX, eot, int8)
    print("perplexity of brown-valid-head.txt:", ppl, scored, "scored tokens")
    (FIXTURES / "brown-tiny.ref.json").write_text(
        json.dumps(
            {
                "cases": cases,
                "valid_head": {"ctx": PPL_CTX, "tokens": len(ids), "scored": scored, "ppl": ppl},
            },
            indent=1,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
