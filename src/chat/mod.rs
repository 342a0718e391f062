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

mod sandbox;

/// What one render may spend. A GGUF's template is untrusted input: a loop can run for hours and
/// a string can double itself until memory runs out, and minijinja (like every Jinja) has no
/// memory limit of its own, while a failed allocation aborts a Rust process. So instructions are
/// counted (minijinja's fuel), output is capped, and on Unix the render runs in a forked child
/// process with an address-space limit and a deadline, killed when it passes either: the
/// caller's process only ever receives the text or an error.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Template instructions one render may execute.
    pub fuel: u64,
    /// Bytes of rendered text.
    pub max_output: usize,
    /// Memory the render may allocate (above what the process already maps), Unix only.
    pub max_memory: u64,
    /// Wall-clock time of one render, Unix only.
    pub timeout: std::time::Duration,
}

impl Limits {
    /// Generous for any real conversation (a render of thousands of messages uses a small part
    /// of each), tight enough that a hostile template returns an error within seconds.
    pub fn for_messages(messages: &[Message<'_>]) -> Limits {
        let input: usize = messages
            .iter()
            .map(|m| m.role.len() + m.content.len())
            .sum();
        Limits {
            fuel: 20_000_000 + 2_000 * messages.len() as u64,
            max_output: (16 << 20) + 4 * input,
            max_memory: (512 << 20) + 16 * input as u64,
            timeout: std::time::Duration::from_secs(5),
        }
    }
}

/// Renders `template` over `messages` within [`Limits::for_messages`]. Errors are
/// `Error::Template` with the engine's message (syntax errors, `raise_exception` calls,
/// undefined filters) or the limit that was passed.
pub fn render(
    template: &str,
    messages: &[Message<'_>],
    add_generation_prompt: bool,
    special: &SpecialTokens<'_>,
) -> Result<String> {
    let limits = Limits::for_messages(messages);
    sandbox::run(limits, || {
        render_in_process(template, messages, add_generation_prompt, special, &limits)
    })
}

/// The render itself, bounded in instructions and output (not in memory: see [`Limits`]).
fn render_in_process(
    template: &str,
    messages: &[Message<'_>],
    add_generation_prompt: bool,
    special: &SpecialTokens<'_>,
    limits: &Limits,
) -> Result<String> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_fuel(Some(limits.fuel));
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", raise_exception);
    let fail = |e: minijinja::Error| Error::Template(describe(&e));
    let tmpl = env.template_from_str(template).map_err(fail)?;
    let messages: Vec<Value> = messages
        .iter()
        .map(|m| context! { role => m.role, content => m.content })
        .collect();
    let mut out = CappedWriter {
        bytes: Vec::new(),
        cap: limits.max_output,
    };
    let rendered = tmpl.render_captured_to(
        context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => special.bos,
            eos_token => special.eos,
        },
        &mut out,
    );
    match rendered {
        Ok(_) => String::from_utf8(out.bytes)
            .map_err(|_| Error::Template("the template produced invalid UTF-8".into())),
        Err(e) if out.bytes.len() >= out.cap => Err(Error::Template(format!(
            "the rendered text passed the limit of {} bytes ({})",
            out.cap,
            describe(&e)
        ))),
        Err(e) if e.kind() == ErrorKind::OutOfFuel => Err(Error::Template(format!(
            "the template ran past its limit of {} instructions",
            limits.fuel
        ))),
        Err(e) => Err(fail(e)),
    }
}

/// Collects output up to `cap` bytes, then fails the render.
struct CappedWriter {
    bytes: Vec<u8>,
    cap: usize,
}

impl std::io::Write for CappedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > self.cap {
            self.bytes
                .extend_from_slice(&buf[..self.cap - self.bytes.len()]);
            return Err(std::io::Error::other("output limit"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
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

    fn render_one(template: &str) -> Result<String> {
        let msgs = [Message {
            role: "user",
            content: "Hi",
        }];
        render(template, &msgs, true, &SpecialTokens::default())
    }

    /// `expect`: alternatives separated by `|`, one of which the message must contain.
    fn assert_template_error(template: &str, expect: &str) {
        let start = std::time::Instant::now();
        let err = render_one(template).unwrap_err();
        eprintln!("{:?}: {err}", start.elapsed());
        assert!(
            matches!(&err, Error::Template(m) if expect.split('|').any(|e| m.contains(e))),
            "{template}: {err}"
        );
        assert!(
            start.elapsed().as_secs() < 10,
            "{template}: {:?}",
            start.elapsed()
        );
    }

    #[test]
    fn hostile_templates_end_in_errors_and_the_process_lives_on() {
        // Doubles a string 64 times: the render's memory limit stops it.
        assert_template_error(
            "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
            "",
        );
        // 10^10 iterations: the instruction limit stops it, or on a machine so busy that the
        // child gets little CPU time, the wall-clock limit first.
        assert_template_error(
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            "instructions|time limit",
        );
        // Output past the cap.
        assert_template_error(
            "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}",
            "limit",
        );
        // Unbounded recursion: minijinja's own recursion limit.
        assert_template_error("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "");
        // And ordinary renders still work, including raise_exception's message.
        assert_eq!(render_one("{{ messages[0].content }}!").unwrap(), "Hi!");
        assert_template_error("{{ raise_exception('nope') }}", "nope");
    }

    #[test]
    fn many_threads_render_at_once() {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                std::thread::spawn(move || {
                    let t = format!("{{{{ messages[0].content }}}}-{i}");
                    render_one(&t).unwrap()
                })
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            assert_eq!(h.join().unwrap(), format!("Hi-{i}"));
        }
    }
}
