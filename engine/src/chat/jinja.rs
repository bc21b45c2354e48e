//! Chat templates as Jinja: a MiniJinja environment set up the way Hugging Face's
//! `apply_chat_template` renders (jinja2's `trim_blocks`/`lstrip_blocks`, Python string
//! methods, `raise_exception`, `strftime_now`), with bounds on work, output size and
//! expression depth so that a hostile template is an error, not a hung or crashed tab.

use minijinja::{Environment, ErrorKind, UndefinedBehavior, Value};

use super::{expression_size, ChatMessage, TEMPLATE_FUEL, TEMPLATE_NAME, TEMPLATE_OUTPUT_LIMIT};
use crate::error::{Error, Result};

pub(super) fn environment(src: &str) -> Result<Environment<'static>> {
    if let Some(line) = expression_size::oversized_tag(src) {
        return Err(Error::Template(format!(
            "a tag on line {line} holds more than {} operators; evaluating it could \
             overflow the stack",
            expression_size::MAX_TAG_OPERATORS
        )));
    }
    let mut env = Environment::new();
    env.set_fuel(Some(TEMPLATE_FUEL));
    // Hugging Face renders chat templates with these jinja2 settings.
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |msg: String| -> std::result::Result<Value, minijinja::Error> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
        },
    );
    // SystemTime::now() panics on wasm32-unknown-unknown; templates test
    // `strftime_now is defined` and fall back to a fixed date there.
    #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
    env.add_function("strftime_now", |fmt: String| {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        strftime_utc(&fmt, secs)
    });
    env.add_template_owned(TEMPLATE_NAME, src.to_string())
        .map_err(template_error)?;
    Ok(env)
}

pub(super) fn render(
    env: &Environment<'static>,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    bos_token: &str,
    eos_token: &str,
) -> Result<String> {
    let tmpl = env.get_template(TEMPLATE_NAME).map_err(template_error)?;
    let mut out = LimitedOutput::default();
    let rendered = tmpl.render_captured_to(
        minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => bos_token,
            eos_token => eos_token,
            tools => Value::from(()),
            documents => Value::from(()),
        },
        &mut out,
    );
    match rendered {
        Ok(_) => String::from_utf8(out.bytes)
            .map_err(|_| Error::Template("the chat template wrote invalid UTF-8".into())),
        Err(_) if out.overflowed => Err(Error::Template(format!(
            "the chat template's output passed the limit of {TEMPLATE_OUTPUT_LIMIT} bytes"
        ))),
        Err(e) if e.kind() == ErrorKind::OutOfFuel => Err(Error::Template(format!(
            "the chat template ran past its budget of {TEMPLATE_FUEL} instructions \
             (a runaway loop?)"
        ))),
        Err(e) => Err(template_error(e)),
    }
}

/// A rendering's output, refused past [`TEMPLATE_OUTPUT_LIMIT`] bytes.
#[derive(Default)]
struct LimitedOutput {
    bytes: Vec<u8>,
    overflowed: bool,
}

impl std::io::Write for LimitedOutput {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + b.len() > TEMPLATE_OUTPUT_LIMIT {
            self.overflowed = true;
            return Err(std::io::Error::other("chat template output limit"));
        }
        self.bytes.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub(super) fn template_error(e: minijinja::Error) -> Error {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    Error::Template(msg)
}

/// `strftime` of a UTC time, for the templates' `strftime_now` (chrono's specifiers, a
/// superset of the C ones templates use); one it does not know is a template error.
#[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), allow(dead_code))]
pub(super) fn strftime_utc(
    fmt: &str,
    unix_secs: i64,
) -> std::result::Result<String, minijinja::Error> {
    use std::fmt::Write;
    let bad = || {
        minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("strftime_now cannot format {fmt:?}"),
        )
    };
    let time = chrono::DateTime::from_timestamp(unix_secs, 0).ok_or_else(bad)?;
    let mut out = String::new();
    write!(out, "{}", time.format(fmt)).map_err(|_| bad())?;
    Ok(out)
}
