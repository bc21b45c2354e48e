//! The kernel self-test a page runs before it trusts a build, and the test-only switch
//! that makes it fail the way a JavaScript engine with other relaxed-SIMD results would.

use bitnet_engine::formats::{DenseMatrix, TernaryMatrix};
use bitnet_engine::kernels::{self, KernelChoice, Kernels, QuantActs};
use std::ops::Range;
use wasm_bindgen::prelude::*;
#[cfg(target_feature = "relaxed-simd")]
use wasm_bindgen::JsCast;

/// Checks this build's kernels against the scalar reference on random shapes; returns
/// the kernel set's name. Lets a page (or the benchmark) verify that the engine computes
/// correctly on this JavaScript engine before trusting its speed. With `break_result`
/// (tests of the build choice only) the ternary matmul's first output is off by one, as
/// a relaxed dot product with other lane semantics would make it.
#[wasm_bindgen(js_name = kernelSelfTest)]
pub fn kernel_self_test(break_result: Option<bool>) -> Result<String, JsValue> {
    for set in kernels::self_test_sets() {
        let k: Box<dyn Kernels> = if break_result == Some(true) {
            Box::new(OffByOne(set))
        } else {
            set
        };
        kernels::selftest::check_against_scalar(k.as_ref(), 20, 1).map_err(|e| {
            crate::js_error(bitnet_engine::Error::Model(format!(
                "kernel self-test failed: {e}"
            )))
        })?;
    }
    // The relaxed build has two ways to sum integer products: the faster one here, timed
    // once per instance (every load in a worker runs the self-test; the choice stays).
    #[cfg(target_feature = "relaxed-simd")]
    {
        static TIMED: std::sync::Once = std::sync::Once::new();
        TIMED.call_once(|| {
            if let Some(now) = performance_now() {
                kernels::wasm::choose_dot_sums(&now, 10.0);
            }
        });
    }
    Ok(kernels::detect(KernelChoice::Auto).name().to_string())
}

/// `performance.now()` of this page, worker or Node, where there is one.
#[cfg(target_feature = "relaxed-simd")]
fn performance_now() -> Option<impl Fn() -> f64> {
    let performance = js_sys::Reflect::get(&js_sys::global(), &"performance".into()).ok()?;
    let now: js_sys::Function = js_sys::Reflect::get(&performance, &"now".into())
        .ok()?
        .dyn_into()
        .ok()?;
    Some(move || {
        now.call0(&performance)
            .ok()
            .and_then(|v| v.as_f64())
            .unwrap_or(0.0)
    })
}

/// A kernel set whose ternary rows are wrong in their first output.
struct OffByOne(Box<dyn Kernels>);

impl Kernels for OffByOne {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn quantize_acts(&self, x: &[f32], cols: usize, out: &mut QuantActs) {
        self.0.quantize_acts(x, cols, out)
    }
    fn ternary_rows(&self, w: &TernaryMatrix, a: &QuantActs, rows: Range<usize>, out: &mut [f32]) {
        self.0.ternary_rows(w, a, rows, out);
        if let Some(first) = out.first_mut() {
            *first += 1.0;
        }
    }
    fn dense_rows(
        &self,
        w: &DenseMatrix,
        x: &[f32],
        n_tok: usize,
        rows: Range<usize>,
        out: &mut [f32],
    ) {
        self.0.dense_rows(w, x, n_tok, rows, out)
    }
}
