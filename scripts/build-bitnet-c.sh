#!/usr/bin/env bash
# Builds bitnet.c (github.com/artalis-io/bitnet.c), the peer `npm run bench` runs beside
# ours when its builds are present, into target/peers/bitnet.c/:
#   scripts/build-bitnet-c.sh SRC   (a checkout of bitnet.c; tested at ab9e8e8, 2026-08-15)
# - bitnet: native, its own Makefile (`-O3 -march=native`, AVX2 kernels for I2_S).
# - bitnet-relaxed.wasm: WASI, SIMD128 + relaxed SIMD, the kernels of its wasm build.
# - bitnet-exact.wasm: the same with its relaxed dot product replaced by an exact one.
#   Its kernels put signed activations in the 7-bit operand of
#   `i32x4.relaxed_dot_i8x16_i7x16_add`, which is undefined there: on x86 V8 the
#   relaxed build computes other numbers (other tokens than its native build).
# The WASI builds need Debian's clang-19, lld-19, libclang-rt-19-dev-wasm32 and wasi-libc.
# Upstream builds wasm only with Emscripten (wasm/build.sh); its source list is taken
# from there, and the few Emscripten and pthread calls it makes get stand-ins below.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 BITNET_C_CHECKOUT" >&2; exit 2; }
src=$(cd "$1" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/target/peers/bitnet.c
rm -rf "$out"
mkdir -p "$out/shim"
# A copy, so the checkout stays as it was.
cp -r "$src" "$out/src"
cd "$out/src"
git -C "$src" rev-parse HEAD > "$out/commit" 2>/dev/null || echo unknown > "$out/commit"

make -s bitnet -j"$(nproc)"
cp bitnet "$out/bitnet"
make -s clean >/dev/null 2>&1 || true

if ! command -v clang-19 >/dev/null || [ ! -d /usr/lib/wasm32-wasi ]; then
  echo "no clang-19 or wasi-libc: built the native peer only" >&2
  exit 0
fi

# Timing through WASI's clock, where the Emscripten build asks the browser.
cat > "$out/shim/emscripten.h" <<'EOF'
#pragma once
#include <time.h>
static inline double emscripten_get_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}
EOF
# wasi-libc without threads has no pthread.h: one thread (run it with -t 1), where
# creating a thread fails and its pool gets no workers.
cat > "$out/shim/pthread.h" <<'EOF'
#pragma once
#include <errno.h>
#include <stddef.h>
typedef int pthread_t, pthread_attr_t, pthread_mutex_t, pthread_mutexattr_t;
typedef int pthread_cond_t, pthread_condattr_t, pthread_once_t;
typedef unsigned pthread_key_t;
#define PTHREAD_MUTEX_INITIALIZER 0
#define PTHREAD_COND_INITIALIZER 0
#define PTHREAD_ONCE_INIT 0
static inline int pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*f)(void *), void *x) {
  (void)t; (void)a; (void)f; (void)x; return EAGAIN;
}
static inline int pthread_join(pthread_t t, void **r) { (void)t; (void)r; return 0; }
static inline int pthread_mutex_init(pthread_mutex_t *m, const pthread_mutexattr_t *a) { (void)a; *m = 0; return 0; }
static inline int pthread_mutex_destroy(pthread_mutex_t *m) { (void)m; return 0; }
static inline int pthread_mutex_lock(pthread_mutex_t *m) { (void)m; return 0; }
static inline int pthread_mutex_unlock(pthread_mutex_t *m) { (void)m; return 0; }
static inline int pthread_cond_init(pthread_cond_t *c, const pthread_condattr_t *a) { (void)a; *c = 0; return 0; }
static inline int pthread_cond_destroy(pthread_cond_t *c) { (void)c; return 0; }
static inline int pthread_cond_signal(pthread_cond_t *c) { (void)c; return 0; }
static inline int pthread_cond_broadcast(pthread_cond_t *c) { (void)c; return 0; }
/* Waiting with no other thread would wait for ever. */
static inline int pthread_cond_wait(pthread_cond_t *c, pthread_mutex_t *m) { (void)c; (void)m; __builtin_trap(); }
static inline int pthread_once(pthread_once_t *o, void (*f)(void)) { if (!*o) { *o = 1; f(); } return 0; }
#define SHIM_KEYS 64
extern void *shim_key_values[SHIM_KEYS];
extern unsigned shim_keys;
static inline int pthread_key_create(pthread_key_t *k, void (*d)(void *)) {
  (void)d; if (shim_keys >= SHIM_KEYS) return EAGAIN; *k = shim_keys++; return 0;
}
static inline void *pthread_getspecific(pthread_key_t k) { return k < SHIM_KEYS ? shim_key_values[k] : NULL; }
static inline int pthread_setspecific(pthread_key_t k, const void *v) {
  if (k >= SHIM_KEYS) return EINVAL; shim_key_values[k] = (void *)v; return 0;
}
EOF
printf '#include "pthread.h"\nvoid *shim_key_values[SHIM_KEYS];\nunsigned shim_keys;\n' > "$out/shim/pthread.c"
# A signed × signed dot product, exact on every engine, in place of the relaxed one.
cat > "$out/shim/exact_dot.h" <<'EOF'
#pragma once
#include <wasm_simd128.h>
static inline v128_t exact_dot_i8(v128_t a, v128_t b, v128_t acc) {
  v128_t lo = wasm_i32x4_extadd_pairwise_i16x8(wasm_i16x8_extmul_low_i8x16(a, b));
  v128_t hi = wasm_i32x4_extadd_pairwise_i16x8(wasm_i16x8_extmul_high_i8x16(a, b));
  return wasm_i32x4_add(acc, wasm_i32x4_add(wasm_i32x4_shuffle(lo, hi, 0, 2, 4, 6),
                                            wasm_i32x4_shuffle(lo, hi, 1, 3, 5, 7)));
}
#define wasm_i32x4_relaxed_dot_i8x16_i7x16_add(a, b, c) exact_dot_i8((a), (b), (c))
EOF

# Under __EMSCRIPTEN__ (which selects its whole-file reader over mmap) one function reads
# a struct that such builds leave opaque; it has no slots there.
sed -i 's/^\(\s*\)return c ? c->n_slots : 0;/#ifdef __EMSCRIPTEN__\n\1(void)c; return 0;\n#else\n&\n#endif/' src/moe_cache.c
# The Emscripten build's sources less its JavaScript API, plus the command line's own.
mapfile -t sources < <(
  grep -o '"\$PROJECT_DIR/[^"]*\.c"' wasm/build.sh | sed 's/"\$PROJECT_DIR\///; s/"$//' | grep -v '^wasm/'
  printf '%s\n' src/main.c src/gpu_backend_runtime.c src/model_backend.c src/model_moe.c \
    src/runtime_policy.c src/sampler_backend.c
)
wasi() {
  clang-19 --target=wasm32-wasi -O3 -flto -msimd128 -mrelaxed-simd -std=c11 -D_GNU_SOURCE \
    -D__EMSCRIPTEN__ -I"$out/shim" -Iinclude -w "$@" "${sources[@]}" "$out/shim/pthread.c" -lm \
    -Wl,--max-memory=4294967296 -Wl,-z,stack-size=8388608
}
wasi -o "$out/bitnet-relaxed.wasm"
wasi -include "$out/shim/exact_dot.h" -o "$out/bitnet-exact.wasm"
echo "bitnet.c $(cat "$out/commit"): $(ls "$out" | grep -E '^bitnet' | tr '\n' ' ')"
