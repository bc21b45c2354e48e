//! The options JavaScript passes in, deserialized straight into Rust types: the engine's
//! own `GenerateOptions` for a generation, `EngineOptions` for a load. Their TypeScript
//! mirror is `EngineGenerateOptions` / `EngineLoadOptions` in web/ts/protocol.ts; a test
//! below checks that both sides name the same fields.

use crate::js_error;
use bitnet_engine::model::KvType;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use wasm_bindgen::{JsCast, JsValue};

#[derive(Deserialize, Serialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct EngineOptions {
    /// KV cache size in tokens (default 2048, at most the model's context length).
    pub(crate) n_ctx: Option<usize>,
    /// File size when known (Content-Length): lets the loader refuse bad offsets early.
    pub(crate) expected_bytes: Option<f64>,
    /// "int8" (default) or "f32".
    pub(crate) act: Option<String>,
    /// Use the scalar kernels even in a SIMD build (for comparisons).
    pub(crate) scalar: bool,
    /// "file" (default), "int8": an int8 LM head built at load time (faster, smaller), or
    /// "int8-exact" / "int4-exact": an int8 / int4 head whose best candidates are scored
    /// again from the offline copy ([`crate::Engine::keep_offline_copy`]).
    pub(crate) head: Option<String>,
    /// "f32" (default) or "f16": how the KV cache keeps keys and values (f16: half the
    /// memory, as bitnet.cpp keeps them).
    pub(crate) kv_cache: Option<KvType>,
    /// Threads for the matrix kernels (the `threads` build, after `buildThreadPool`):
    /// default all of the pool's.
    pub(crate) threads: Option<usize>,
    /// "auto" (default), "gguf", "bitnet", or Jinja source.
    pub(crate) chat_template: Option<String>,
    /// "auto" (default) or a llama.cpp pre-tokenizer name such as "default".
    pub(crate) pre_tokenizer: Option<String>,
    /// Bytes the engine may use in all (default: the 4 GiB wasm32 addresses). The model's
    /// tensors, over all parts of a split model, may take this less 512 MiB; a KV cache
    /// what is left beside the memory in use.
    pub(crate) memory_limit: Option<f64>,
}

/// `options` as `T`; `undefined`, `null` and fields set to either mean "not given", as in
/// JavaScript APIs, so the defaults apply (flattened serde structs would otherwise see a
/// present field of the wrong type).
pub(crate) fn from_js<T: DeserializeOwned + Default>(options: JsValue) -> Result<T, JsValue> {
    if options.is_undefined() || options.is_null() {
        return Ok(T::default());
    }
    serde_wasm_bindgen::from_value(given(options)).map_err(bad_options)
}

pub(crate) fn bad_options(e: serde_wasm_bindgen::Error) -> JsValue {
    js_error(bitnet_engine::Error::InvalidArgument(e.to_string()))
}

fn given(options: JsValue) -> JsValue {
    if !options.is_object() || js_sys::Array::is_array(&options) {
        return options;
    }
    let kept = js_sys::Object::new();
    for entry in js_sys::Object::entries(options.unchecked_ref()).iter() {
        let entry: js_sys::Array = entry.unchecked_into();
        let value = entry.get(1);
        if !(value.is_undefined() || value.is_null()) {
            // Setting a property of a fresh plain object cannot fail.
            let _ = js_sys::Reflect::set(&kept, &entry.get(0), &value);
        }
    }
    kept.into()
}

#[cfg(test)]
mod tests {
    use super::EngineOptions;
    use bitnet_engine::session::GenerateOptions;
    use serde::Serialize;
    use std::collections::BTreeMap;

    const PROTOCOL: &str = include_str!("../ts/protocol.ts");

    /// The fields of `export interface NAME { … }` in protocol.ts, with their types.
    fn ts_fields(name: &str) -> BTreeMap<String, String> {
        let start = PROTOCOL
            .find(&format!("export interface {name} {{"))
            .unwrap_or_else(|| panic!("protocol.ts has no interface {name}"));
        let body = &PROTOCOL[start..];
        let body = &body[body.find('{').unwrap() + 1..body.find("\n}").unwrap()];
        body.lines()
            .map(str::trim)
            .filter(|l| {
                !l.is_empty() && !l.starts_with("/*") && !l.starts_with('*') && !l.starts_with("//")
            })
            .map(|l| {
                let (key, ty) = l
                    .split_once(':')
                    .unwrap_or_else(|| panic!("not a field: {l}"));
                let key = key.trim_end_matches('?');
                (key.to_string(), ty.trim().trim_end_matches(';').to_string())
            })
            .collect()
    }

    /// The serde names of `T`'s fields, with the JSON type of their default where it has one.
    fn rust_fields<T: Serialize + Default>() -> BTreeMap<String, Option<&'static str>> {
        let v = serde_json::to_value(T::default()).unwrap();
        v.as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                let ty = match v {
                    serde_json::Value::Null => None,
                    serde_json::Value::Bool(_) => Some("boolean"),
                    serde_json::Value::Number(_) => Some("number"),
                    serde_json::Value::String(_) => Some("string"),
                    serde_json::Value::Array(_) => Some("[]"),
                    serde_json::Value::Object(_) => Some("{"),
                };
                (k.clone(), ty)
            })
            .collect()
    }

    fn same_schema<T: Serialize + Default>(ts_name: &str) {
        let ts = ts_fields(ts_name);
        let rust = rust_fields::<T>();
        assert_eq!(
            ts.keys().collect::<Vec<_>>(),
            rust.keys().collect::<Vec<_>>(),
            "{ts_name} in web/ts/protocol.ts and its Rust type name different fields"
        );
        for (key, ty) in rust {
            if let Some(ty) = ty {
                assert!(
                    ts[&key].contains(ty),
                    "{ts_name}.{key}: the TypeScript type `{}` does not take the Rust default's JSON type ({ty})",
                    ts[&key]
                );
            }
        }
    }

    #[test]
    fn generate_options_match_their_typescript_mirror() {
        same_schema::<GenerateOptions>("EngineGenerateOptions");
    }

    #[test]
    fn load_options_match_their_typescript_mirror() {
        same_schema::<EngineOptions>("EngineLoadOptions");
    }
}
