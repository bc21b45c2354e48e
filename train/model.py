"""The bitnet-b1.58 architecture in JAX, with BitNet b1.58's quantization-aware forward.

One layer, as in BitNet b1.58 2B4T (and as the engine runs it):
  x = RMSNorm(h)             -> q, k, v = BitLinear(x)   -> NeoX RoPE on q, k
  a = causal GQA attention   -> a = RMSNorm(a) (the attention sub-norm)
  h = h + BitLinear_o(a)
  x = RMSNorm(h)             -> g, u = BitLinear(x)      -> m = relu(g)² · u
  m = RMSNorm(m) (the FFN sub-norm)  -> h = h + BitLinear_down(m)
then a final RMSNorm and the tied embedding as the LM head. No biases.

BitLinear quantizes in the forward pass and lets gradients straight through
(`x + stop_gradient(q(x) - x)`) to the latent full-precision weights:
  weights: absmean ternary, s = mean|W| (rounded to f16, as the exported file stores
           it for TQ1_0/TQ2_0), W_q = clip(round(W / s), -1, 1) · s;
  inputs:  per-token absmax int8, c = 127 / max|x|, x_q = clip(round(x · c), -128, 127) / c.
"""

from dataclasses import asdict, dataclass

import jax
import jax.numpy as jnp


@dataclass(frozen=True)
class Config:
    n_vocab: int = 4096
    n_embd: int = 256
    n_layer: int = 6
    n_head: int = 4
    n_head_kv: int = 2
    n_ff: int = 768
    n_ctx: int = 512
    rope_theta: float = 10000.0
    rms_eps: float = 1e-5

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def to_dict(self) -> dict:
        return asdict(self)


# Every linear layer of a block: name -> (rows, cols) as a function of the config.
def linear_shapes(c: Config) -> dict[str, tuple[int, int]]:
    kv = c.n_head_kv * c.head_dim
    return {
        "attn_q": (c.n_embd, c.n_embd),
        "attn_k": (kv, c.n_embd),
        "attn_v": (kv, c.n_embd),
        "attn_output": (c.n_embd, c.n_embd),
        "ffn_gate": (c.n_ff, c.n_embd),
        "ffn_up": (c.n_ff, c.n_embd),
        "ffn_down": (c.n_embd, c.n_ff),
    }


def norm_sizes(c: Config) -> dict[str, int]:
    return {"attn_norm": c.n_embd, "attn_sub_norm": c.n_embd, "ffn_norm": c.n_embd, "ffn_sub_norm": c.n_ff}


def init(c: Config, key) -> dict:
    """Latent weights; each block tensor has a leading layer axis (for `lax.scan`)."""
    keys = jax.random.split(key, 1 + len(linear_shapes(c)))
    params = {
        "token_embd": 0.02 * jax.random.normal(keys[0], (c.n_vocab, c.n_embd)),
        "output_norm": jnp.ones((c.n_embd,)),
    }
    for k, (name, (rows, cols)) in zip(keys[1:], linear_shapes(c).items()):
        params[name] = 0.02 * jax.random.normal(k, (c.n_layer, rows, cols))
    for name, n in norm_sizes(c).items():
        params[name] = jnp.ones((c.n_layer, n))
    return params


def ste(x, q):
    return x + jax.lax.stop_gradient(q - x)


def ternary(w):
    s = jnp.maximum(jnp.mean(jnp.abs(w)), 1e-8).astype(jnp.float16).astype(jnp.float32)
    return ste(w, jnp.clip(jnp.round(w / s), -1, 1) * s)


def int8_tokens(x):
    c = 127.0 / jnp.maximum(jnp.max(jnp.abs(x), axis=-1, keepdims=True), 1e-5)
    return ste(x, jnp.clip(jnp.round(x * c), -128, 127) / c)


def bitlinear(x, w):
    return int8_tokens(x) @ ternary(w).T


def rms_norm(x, w, eps):
    return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rope(x, c: Config):
    """NeoX RoPE: rotates the pairs (i, i + d/2) of every head; x is [B, T, H, d]."""
    half = c.head_dim // 2
    freq = c.rope_theta ** (-2.0 * jnp.arange(half) / c.head_dim)
    ang = jnp.arange(x.shape[1])[:, None] * freq[None, :]
    cos, sin = jnp.cos(ang)[None, :, None, :], jnp.sin(ang)[None, :, None, :]
    a, b = x[..., :half], x[..., half:]
    return jnp.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1)


def block(c: Config, h, p):
    B, T, _ = h.shape
    x = rms_norm(h, p["attn_norm"], c.rms_eps)
    q = bitlinear(x, p["attn_q"]).reshape(B, T, c.n_head, c.head_dim)
    k = bitlinear(x, p["attn_k"]).reshape(B, T, c.n_head_kv, c.head_dim)
    v = bitlinear(x, p["attn_v"]).reshape(B, T, c.n_head_kv, c.head_dim)
    q, k = rope(q, c), rope(k, c)
    group = c.n_head // c.n_head_kv
    k, v = jnp.repeat(k, group, axis=2), jnp.repeat(v, group, axis=2)
    scores = jnp.einsum("bthd,bshd->bhts", q, k) / jnp.sqrt(c.head_dim)
    causal = jnp.tril(jnp.ones((T, T), bool))
    scores = jnp.where(causal[None, None], scores, -jnp.inf)
    a = jnp.einsum("bhts,bshd->bthd", jax.nn.softmax(scores, axis=-1), v).reshape(B, T, c.n_embd)
    a = rms_norm(a, p["attn_sub_norm"], c.rms_eps)
    h = h + bitlinear(a, p["attn_output"])
    x = rms_norm(h, p["ffn_norm"], c.rms_eps)
    m = jnp.square(jax.nn.relu(bitlinear(x, p["ffn_gate"]))) * bitlinear(x, p["ffn_up"])
    m = rms_norm(m, p["ffn_sub_norm"], c.rms_eps)
    return h + bitlinear(m, p["ffn_down"])


def forward(c: Config, params, tokens):
    """Logits [B, T, V] for tokens [B, T]."""
    layers = {k: v for k, v in params.items() if k not in ("token_embd", "output_norm")}
    h = params["token_embd"][tokens]
    h, _ = jax.lax.scan(lambda h, p: (block(c, h, p), None), h, layers)
    return rms_norm(h, params["output_norm"], c.rms_eps) @ params["token_embd"].T


def loss(c: Config, params, batch):
    logits = forward(c, params, batch[:, :-1])
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, batch[:, 1:, None], axis=-1))
