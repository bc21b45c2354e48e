# The toolchain pins every build script shares (sourced, not run).
# The `-threads` wasm builds rebuild std with atomics (`-Z build-std`), which needs a
# nightly; a dated one keeps those builds reproducible. Its rustc is
# 1.97.0-nightly (e50aa6fba 2026-05-19). The stable floor is `rust-version` in Cargo.toml.
NIGHTLY=nightly-2026-05-20
