//! A model loaded with its tokenizer and chat template, and how a request becomes the
//! prompt's token ids.

use crate::chat::{ChatFormat, ChatMessage, ChatTemplate};
use crate::error::{Error, Result};
use crate::formats::DenseMatrix;
use crate::gguf::GgufFile;
use crate::model::{HeadMode, HeadTap, Model};
use crate::tokenizer::{PreTokenizerChoice, Tokenizer, VocabSpec};
use std::sync::Arc;

/// A model with its tokenizer and chat template, ready to make sessions from.
pub struct LoadedModel {
    pub model: Arc<Model>,
    pub tokenizer: Arc<Tokenizer>,
    pub template: Arc<ChatTemplate>,
}

/// What a caller may choose when loading a model; the defaults follow the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadSettings {
    pub head: HeadMode,
    pub chat_format: ChatFormat,
    pub pre_tokenizer: PreTokenizerChoice,
}

impl LoadedModel {
    pub fn from_gguf(file: GgufFile) -> Result<LoadedModel> {
        LoadedModel::from_gguf_with(file, &LoadSettings::default())
    }

    pub fn from_gguf_with(file: GgufFile, settings: &LoadSettings) -> Result<LoadedModel> {
        LoadedModel::from_gguf_and_head(file, None, settings)
    }

    /// For a file loaded through a [`HeadTap`] (made with `settings.head`): `head` is the
    /// int8 head it built while the file streamed in.
    pub fn from_gguf_and_head(
        mut file: GgufFile,
        head: Option<DenseMatrix>,
        settings: &LoadSettings,
    ) -> Result<LoadedModel> {
        let (tokenizer, template) = chat_parts(&file, settings)?;
        let mut model = Model::from_gguf_with_head(&mut file, head)?;
        model.set_head(settings.head);
        if tokenizer.n_vocab() > model.config.n_vocab {
            return Err(Error::Model(format!(
                "the tokenizer has {} tokens but the model only {} embeddings",
                tokenizer.n_vocab(),
                model.config.n_vocab
            )));
        }
        Ok(LoadedModel {
            model: Arc::new(model),
            tokenizer: Arc::new(tokenizer),
            template: Arc::new(template),
        })
    }

    pub fn from_path(path: impl AsRef<std::path::Path>) -> Result<LoadedModel> {
        LoadedModel::from_path_with(path, &LoadSettings::default())
    }

    /// Reads the file once; an int8 head is built as it streams in (its float bytes
    /// are never all held).
    pub fn from_path_with(
        path: impl AsRef<std::path::Path>,
        settings: &LoadSettings,
    ) -> Result<LoadedModel> {
        let (file, tap) = GgufFile::from_path_with_tap(path, HeadTap::new(settings.head))?;
        LoadedModel::from_gguf_and_head(file, tap.into_head()?, settings)
    }
}

/// The tokenizer and chat template of `file` (its metadata only: vocabulary-only
/// files work too).
pub fn chat_parts(file: &GgufFile, settings: &LoadSettings) -> Result<(Tokenizer, ChatTemplate)> {
    let spec = VocabSpec::from_metadata(&file.metadata)?;
    let tokenizer = Tokenizer::from_spec_with(&spec, &settings.pre_tokenizer)?;
    let token_text = |id: Option<u32>| {
        id.map(|i| String::from_utf8_lossy(tokenizer.token_bytes(i)).into_owned())
            .unwrap_or_default()
    };
    let template = ChatTemplate::choose(
        spec.chat_template.as_deref(),
        &settings.chat_format,
        &token_text(tokenizer.bos()),
        &token_text(tokenizer.eos()),
        tokenizer.token_id(crate::chat::BUILTIN_EOT).is_some(),
    )?;
    Ok((tokenizer, template))
}

/// The prompt tokens of a whole conversation: the template's markers as special tokens,
/// message contents and roles as plain text (a message holding `<|eot_id|>` does not end
/// its turn).
pub fn chat_prompt_ids(
    tokenizer: &Tokenizer,
    template: &ChatTemplate,
    messages: &[ChatMessage],
) -> Result<Vec<u32>> {
    check_roles(tokenizer, messages)?;
    encode_rendered(
        tokenizer,
        &template.render_prompt(messages, true)?,
        messages,
    )
}

/// A role is compared by the template, never tokenized on its own, so it may not hold
/// special-token text (it could not be kept plain inside a Jinja template's output).
pub(super) fn check_roles(tokenizer: &Tokenizer, messages: &[ChatMessage]) -> Result<()> {
    for m in messages {
        if let Some(t) = tokenizer.special_text_in(&m.role) {
            return Err(Error::InvalidArgument(format!(
                "the message role '{}' holds the special token text '{t}'",
                m.role
            )));
        }
    }
    Ok(())
}

pub(super) fn encode_rendered(
    tokenizer: &Tokenizer,
    rendered: &crate::chat::RenderedPrompt,
    messages: &[ChatMessage],
) -> Result<Vec<u32>> {
    match &rendered.plain {
        Some(ranges) => tokenizer.encode_chat(&rendered.text, ranges),
        None => {
            // The template rewrote the contents beyond recognition: only safe when no
            // content holds special-token text to begin with.
            if let Some(t) = messages
                .iter()
                .find_map(|m| tokenizer.special_text_in(&m.content))
            {
                return Err(Error::Template(format!(
                    "a message holds the special token text '{t}', and this chat template \
                     changes message contents so that they cannot be kept apart from its \
                     own markers"
                )));
            }
            tokenizer.encode(&rendered.text, false, true)
        }
    }
}
