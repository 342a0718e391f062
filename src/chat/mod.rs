//! Chat templates: a model's own Jinja template (GGUF key `tokenizer.chat_template`) rendered
//! with a real template engine (minijinja), the way Hugging Face's `apply_chat_template` does.
//!
//! Templates run with what they expect from transformers: `messages` (list of {role, content}),
//! `add_generation_prompt`, `bos_token`, `eos_token`, a `raise_exception(msg)` function, Python
//! string methods (`.strip()`, `.startswith()`, ...) and `trim_blocks` + `lstrip_blocks`.
//! Whatever a template does on its own (SmolLM2's inserts a default system message) happens here
//! too, because the template itself is executed.

use crate::{Error, Result};
use minijinja::{context, Environment, ErrorKind, Value};

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    pub role: &'a str,
    pub content: &'a str,
}

/// Special-token texts a template may print (`{{ bos_token }}`); empty when the model has none.
#[derive(Debug, Clone, Default)]
pub struct SpecialTokens<'a> {
    pub bos: &'a str,
    pub eos: &'a str,
}

/// Renders `template` over `messages`. Errors are `Error::Template` with the engine's message
/// (syntax errors, `raise_exception` calls, undefined filters).
pub fn render(
    template: &str,
    messages: &[Message<'_>],
    add_generation_prompt: bool,
    special: &SpecialTokens<'_>,
) -> Result<String> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", raise_exception);
    let fail = |e: minijinja::Error| Error::Template(describe(&e));
    let tmpl = env.template_from_str(template).map_err(fail)?;
    let messages: Vec<Value> = messages
        .iter()
        .map(|m| context! { role => m.role, content => m.content })
        .collect();
    tmpl.render(context! {
        messages => messages,
        add_generation_prompt => add_generation_prompt,
        bos_token => special.bos,
        eos_token => special.eos,
    })
    .map_err(fail)
}

fn raise_exception(message: String) -> std::result::Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
}

/// The engine's message plus its cause chain (the interesting part is often in the cause).
fn describe(e: &minijinja::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nDefault<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn renders_default_system_message_and_generation_prompt() {
        let msgs = [Message {
            role: "user",
            content: "Hi",
        }];
        let out = render(CHATML, &msgs, true, &SpecialTokens::default()).unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nDefault<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let out = render(CHATML, &msgs, false, &SpecialTokens::default()).unwrap();
        assert!(out.ends_with("Hi<|im_end|>\n"));
    }

    #[test]
    fn python_methods_special_tokens_and_block_trimming() {
        let t = "{{ bos_token }}{% for m in messages %}\n  {% if m.role.startswith('us') %}[{{ m.content.strip() }}]{% endif %}\n{% endfor %}{{ eos_token }}";
        let msgs = [
            Message {
                role: "user",
                content: "  a  ",
            },
            Message {
                role: "assistant",
                content: "b",
            },
        ];
        let out = render(
            t,
            &msgs,
            false,
            &SpecialTokens {
                bos: "<s>",
                eos: "</s>",
            },
        )
        .unwrap();
        assert_eq!(out, "<s>[a]</s>");
    }

    #[test]
    fn raise_exception_and_syntax_errors_are_template_errors() {
        let t = "{% if messages[0].role == 'system' %}{{ raise_exception('no system role') }}{% endif %}";
        let err = render(
            t,
            &[Message {
                role: "system",
                content: "x",
            }],
            false,
            &SpecialTokens::default(),
        )
        .unwrap_err();
        assert!(
            matches!(&err, Error::Template(m) if m.contains("no system role")),
            "{err}"
        );
        let err = render("{% for %}", &[], false, &SpecialTokens::default()).unwrap_err();
        assert!(matches!(err, Error::Template(_)));
    }
}
