//! Hostile chat templates, each applied in a child process under 2 GiB: they must fail within
//! the bound and leave the process working.

use crate::common::capi::Model;
use crate::common::child::Limits;
use crate::{
    child_after, expect_report, panic_text, report_result, run_child, smollm2, timed, PROMPT_RETURN,
};
use rocmforge::ffi::status::rocmforge_status::*;
use std::time::Duration;

/// Hostile chat templates by name. Macros are not built into this minijinja, so the macro one is
/// refused when parsed; it stays as a guard should they be enabled. The deep_* texts are made by
/// [`template_text`].
const TEMPLATES: [(&str, &str); 9] = [
    (
        "doubling",
        "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}\
         {% endfor %}{{ ns.s|length }}",
    ),
    (
        "nested_loops",
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    ),
    (
        "repeat",
        "{% for i in range(100000) %}{{ 'x' * 100000000 }}{% endfor %}",
    ),
    (
        "recursion",
        "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    ),
    (
        "recursive_loop",
        "{% for m in messages recursive %}{{ loop(messages) }}{% endfor %}",
    ),
    ("deep_brackets", ""),
    ("deep_parens", ""),
    (
        "huge_output",
        "{% for i in range(100000) %}{% for j in range(100000) %}\
         {{ messages[0].content }}{{ messages[0].content }}{% endfor %}{% endfor %}",
    ),
    (
        "join_bomb",
        "{% set ns = namespace(l=['xxxxxxxx']) %}{% for i in range(40) %}\
         {% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l|join(',')|length }}",
    ),
];

fn template_text(name: &str) -> String {
    // Nesting 20000 deep, for a recursive-descent parser's stack.
    let deep = |open: &str, close: &str| {
        format!("{{{{ {}1{} }}}}", open.repeat(20000), close.repeat(20000))
    };
    match name {
        "deep_brackets" => deep("[", "]"),
        "deep_parens" => deep("(", ")"),
        _ => TEMPLATES.iter().find(|(n, _)| *n == name).unwrap().1.into(),
    }
}

/// arg: the template's name in TEMPLATES.
pub(crate) fn child_template(arg: &str) {
    let text = template_text(arg);
    let model = Model::load(&smollm2().unwrap(), true).unwrap();
    let (r, t) = timed(|| model.chat_apply(Some(&text)));
    report_result("hostile", &r, t);
    let (r, t) = timed(|| model.chat_apply(None));
    assert!(r.as_ref().is_ok_and(|s| s.contains("Hello")), "{r:?}");
    report_result("after_template", &r, t);
    drop(model);
    child_after();
}

#[test]
fn hostile_chat_templates_fail_within_10_s_under_2_gib_and_the_process_lives_on() {
    let Some(_) = smollm2() else {
        return;
    };
    let mut failures = Vec::new();
    for (name, _) in TEMPLATES {
        let o = run_child("template", name, Limits::two_gib(20));
        let r = std::panic::catch_unwind(|| {
            o.assert_clean_exit();
            expect_report(&o, "hostile", &[ROCMFORGE_ERR_TEMPLATE], PROMPT_RETURN);
            expect_report(&o, "after_template", &[ROCMFORGE_OK], Duration::MAX);
            expect_report(&o, "after", &[ROCMFORGE_OK], Duration::MAX);
            eprintln!("template {name}: {:?}", o.report("hostile"));
        });
        if let Err(e) = r {
            failures.push(panic_text(e));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
