//! Reads the tokenizer description out of GGUF metadata.

use super::value::Metadata;
use crate::error::{Error, Result};
use crate::tokenizer::VocabSpec;

impl VocabSpec {
    pub fn from_metadata(md: &Metadata) -> Result<VocabSpec> {
        let missing = |k: &str| Error::Tokenizer(format!("the model has no '{k}' metadata"));
        let model = md
            .get_str("tokenizer.ggml.model")
            .ok_or_else(|| missing("tokenizer.ggml.model"))?
            .to_string();
        let tokens = md
            .get_str_array("tokenizer.ggml.tokens")
            .ok_or_else(|| missing("tokenizer.ggml.tokens"))?
            .to_vec();
        let token_types = match md.get_array("tokenizer.ggml.token_type") {
            Some(a) => a
                .to_i64_vec()
                .ok_or_else(|| {
                    Error::Tokenizer("tokenizer.ggml.token_type is not an integer array".into())
                })?
                .into_iter()
                .map(|t| t as i32)
                .collect(),
            None => vec![1; tokens.len()],
        };
        if token_types.len() != tokens.len() {
            return Err(Error::Tokenizer(format!(
                "{} token types for {} tokens",
                token_types.len(),
                tokens.len()
            )));
        }
        let merges = md
            .get_str_array("tokenizer.ggml.merges")
            .map(<[String]>::to_vec)
            .unwrap_or_default();
        let id = |k: &str| -> Result<Option<u32>> {
            match md.get_u64(k) {
                None => Ok(None),
                Some(v) if (v as usize) < tokens.len() => Ok(Some(v as u32)),
                Some(v) => Err(Error::Tokenizer(format!(
                    "{k} = {v} is outside the vocabulary"
                ))),
            }
        };
        Ok(VocabSpec {
            model,
            pre: md.get_str("tokenizer.ggml.pre").map(str::to_string),
            bos: id("tokenizer.ggml.bos_token_id")?,
            eos: id("tokenizer.ggml.eos_token_id")?,
            eot: id("tokenizer.ggml.eot_token_id")?,
            add_bos: md.get_bool("tokenizer.ggml.add_bos_token").unwrap_or(true),
            chat_template: md.get_str("tokenizer.chat_template").map(str::to_string),
            tokens,
            token_types,
            merges,
        })
    }
}
