//! A model loaded with its tokenizer and chat template, and how a request becomes the
//! prompt's token ids.

use crate::chat::{ChatFormat, ChatMessage, ChatTemplate};
use crate::error::{Error, Result};
use crate::formats::DenseMatrix;
use crate::gguf::{split_count_of, FileBytes, GgufFile, TensorInfo};
use crate::model::{HeadMode, HeadTap, Model, EMBD, OUTPUT};
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
        file: GgufFile,
        head: Option<DenseMatrix>,
        settings: &LoadSettings,
    ) -> Result<LoadedModel> {
        LoadedModel::from_gguf_with_source(file, head, settings, None)
    }

    /// [`from_gguf_and_head`](Self::from_gguf_and_head), with the file the model came from
    /// kept readable as `source`: what the exact heads ([`HeadMode::is_exact`]) read the float head from.
    pub fn from_gguf_with_source(
        mut file: GgufFile,
        head: Option<DenseMatrix>,
        settings: &LoadSettings,
        source: Option<Arc<dyn FileBytes>>,
    ) -> Result<LoadedModel> {
        let (tokenizer, template) = chat_parts(&file, settings)?;
        let exact = if settings.head.is_exact() {
            Some(exact_head_source(&file, source, settings.head)?)
        } else {
            None
        };
        let mut model = Model::from_gguf_with_head(&mut file, head)?;
        model.set_head(settings.head);
        if let Some((source, info)) = exact {
            model.read_float_head_from(source, &info, file.data_start)?;
        }
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
        let path = path.as_ref();
        let (file, tap) = GgufFile::from_path_with_tap(path, HeadTap::new(settings.head))?;
        let source = if settings.head.is_exact() {
            Some(Arc::new(std::fs::File::open(path)?) as Arc<dyn FileBytes>)
        } else {
            None
        };
        LoadedModel::from_gguf_with_source(file, tap.into_head()?, settings, source)
    }
}

/// The file and the head's tensor in it, for the exact head: refused where the file was
/// not kept, or is split (offsets are per part).
fn exact_head_source(
    file: &GgufFile,
    source: Option<Arc<dyn FileBytes>>,
    mode: HeadMode,
) -> Result<(Arc<dyn FileBytes>, TensorInfo)> {
    let name = mode.name();
    let source = source.ok_or_else(|| {
        Error::InvalidArgument(format!(
            "the '{name}' head reads the float head from the model file, which this load did \
             not keep readable"
        ))
    })?;
    if split_count_of(&file.metadata) != 1 {
        return Err(Error::InvalidArgument(format!(
            "the '{name}' head needs a model in one file, not split"
        )));
    }
    // The tensor the model's head will be: `output.weight`, else the tied embedding,
    // whether a tap took it while loading or it is still in the file.
    let find = |name: &str| {
        file.tapped
            .iter()
            .find(|t| t.name == name)
            .or_else(|| file.tensor(name).map(|t| &t.info))
    };
    let info = find(OUTPUT)
        .or_else(|| find(EMBD))
        .ok_or_else(|| Error::Model(format!("missing tensor '{EMBD}'")))?;
    Ok((source, info.clone()))
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
