//! What a caller may ask of one generation. The serde form is the one the package sends
//! across the worker boundary (`EngineGenerateOptions` in web/ts/protocol.ts, checked by a
//! test in the bindings): flat, OpenAI-style names, every field optional.

use crate::error::{Error, Result};
use crate::sampler::{LoopGuard, SamplerConfig};
use serde::{Deserialize, Deserializer, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerateOptions {
    pub max_tokens: usize,
    /// `temperature`, `top_k`, `top_p`, … sit beside `max_tokens` in the serde form.
    #[serde(flatten)]
    pub sampler: SamplerConfig,
    /// Generation ends when the text contains one of these (the stop string itself is not returned).
    pub stop: Vec<String>,
    /// `None` disables loop detection. The serde form also takes `true` (the default
    /// guard) and `false` (none).
    #[serde(deserialize_with = "loop_guard_or_bool")]
    pub loop_guard: Option<LoopGuard>,
    /// Tokens per prefill batch; abort is checked between batches.
    pub prefill_chunk: usize,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_tokens: 512,
            sampler: SamplerConfig::default(),
            stop: Vec::new(),
            loop_guard: Some(LoopGuard::default()),
            prefill_chunk: 128,
        }
    }
}

impl GenerateOptions {
    /// Refuses values no sampler can mean, naming the option as the package spells it.
    pub fn validate(&self) -> Result<()> {
        let s = &self.sampler;
        let bad = |field: &str, want: &str, got: String| {
            Err(Error::InvalidArgument(format!(
                "{field} must be {want} (got {got})"
            )))
        };
        if !(s.temperature.is_finite() && s.temperature >= 0.0) {
            return bad(
                "temperature",
                "a number ≥ 0 (0 is greedy)",
                s.temperature.to_string(),
            );
        }
        if !(s.top_p > 0.0 && s.top_p <= 1.0) {
            return bad("top_p", "in (0, 1] (1 turns it off)", s.top_p.to_string());
        }
        if !(0.0..=1.0).contains(&s.min_p) {
            return bad("min_p", "in [0, 1] (0 turns it off)", s.min_p.to_string());
        }
        if !(s.repetition_penalty.is_finite() && s.repetition_penalty > 0.0) {
            return bad(
                "repetition_penalty",
                "a number > 0 (1 turns it off)",
                s.repetition_penalty.to_string(),
            );
        }
        if self.max_tokens < 1 {
            return bad("max_tokens", "at least 1", self.max_tokens.to_string());
        }
        if self.prefill_chunk < 1 {
            return bad(
                "prefill_chunk",
                "at least 1",
                self.prefill_chunk.to_string(),
            );
        }
        if self.stop.iter().any(String::is_empty) {
            return bad("stop", "non-empty strings", format!("{:?}", self.stop));
        }
        Ok(())
    }
}

fn loop_guard_or_bool<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<LoopGuard>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        OnOff(bool),
        Tuned(LoopGuard),
    }
    Ok(match Option::<Form>::deserialize(d)? {
        None | Some(Form::OnOff(false)) => None,
        Some(Form::OnOff(true)) => Some(LoopGuard::default()),
        Some(Form::Tuned(g)) => Some(g),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_serde_form_is_flat_and_every_field_optional() {
        let o: GenerateOptions = serde_json::from_str(
            r#"{"max_tokens": 7, "temperature": 0, "top_k": 3, "seed": 9, "stop": ["\n"],
                "loop_guard": false, "prefill_chunk": 16}"#,
        )
        .unwrap();
        assert_eq!(o.max_tokens, 7);
        assert_eq!(o.sampler.temperature, 0.0);
        assert_eq!(o.sampler.top_k, 3);
        assert_eq!(o.sampler.seed, 9);
        // Fields not given keep the defaults of `GenerateOptions::default()`.
        assert_eq!(o.sampler.top_p, SamplerConfig::default().top_p);
        assert_eq!(o.stop, vec!["\n".to_string()]);
        assert_eq!(o.loop_guard, None);
        assert_eq!(o.prefill_chunk, 16);
        let none: GenerateOptions = serde_json::from_str("{}").unwrap();
        assert_eq!(none, GenerateOptions::default());
    }

    #[test]
    fn loop_guard_takes_a_switch_or_its_parameters() {
        let on: GenerateOptions = serde_json::from_str(r#"{"loop_guard": true}"#).unwrap();
        assert_eq!(on.loop_guard, Some(LoopGuard::default()));
        let tuned: GenerateOptions =
            serde_json::from_str(r#"{"loop_guard": {"max_period": 8}}"#).unwrap();
        assert_eq!(
            tuned.loop_guard,
            Some(LoopGuard {
                max_period: 8,
                ..LoopGuard::default()
            })
        );
        assert!(serde_json::from_str::<GenerateOptions>(r#"{"loop_guard": 3}"#).is_err());
    }

    #[test]
    fn a_value_of_the_wrong_type_is_an_error() {
        assert!(serde_json::from_str::<GenerateOptions>(r#"{"max_tokens": "many"}"#).is_err());
        assert!(serde_json::from_str::<GenerateOptions>(r#"{"seed": -1}"#).is_err());
    }
}
