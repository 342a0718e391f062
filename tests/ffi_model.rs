//! C ABI statuses that need a specially made model file: no chat template (and no name), an
//! unsupported architecture, a broken tokenizer. The files are written from SmolLM2 with the
//! crate's GGUF writer, so no network or extra download is needed.

mod common;

use rocmforge::ffi::model::*;
use rocmforge::ffi::status::rocmforge_last_error;
use rocmforge::ffi::status::rocmforge_status::{self, *};
use rocmforge::ffi::tokenizer::rocmforge_chat_apply;
use rocmforge::gguf::{GgufFile, GgufWriter, Value};
use std::ffi::{c_char, CStr, CString};
use std::path::{Path, PathBuf};

fn last_error() -> String {
    // SAFETY: never NULL; valid until this thread's next library call.
    unsafe { CStr::from_ptr(rocmforge_last_error()) }
        .to_string_lossy()
        .into_owned()
}

/// Copies `src` to `dst` with the metadata edited by `edit` (tensors unchanged).
fn copy_with(src: &Path, dst: &Path, edit: impl Fn(&str, &Value) -> Option<Value>) {
    let g = GgufFile::open(src).unwrap();
    let mut w = GgufWriter::new();
    for (key, value) in g.metadata() {
        if key == "general.alignment" {
            continue;
        }
        if let Some(v) = edit(key, value) {
            w.add_kv(key.clone(), v).unwrap();
        }
    }
    for t in g.tensors() {
        w.add_tensor(t.name.clone(), &t.dims, t.ty, g.tensor_data(t).to_vec())
            .unwrap();
    }
    w.write_to(dst).unwrap();
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rocmforge-ffi-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn load(path: &Path) -> (rocmforge_status, *mut rocmforge_model) {
    let c = CString::new(path.to_str().unwrap()).unwrap();
    let mut model = std::ptr::null_mut();
    // SAFETY: valid NUL-terminated path and out-pointer; NULL params = defaults.
    let status = unsafe { rocmforge_model_load(c.as_ptr(), std::ptr::null(), &mut model) };
    (status, model)
}

#[test]
fn a_model_without_template_or_name_says_so() {
    let Some(src) = common::model_path(common::SMOLLM2) else {
        return;
    };
    let path = scratch("no-template.gguf");
    copy_with(&src, &path, |key, v| match key {
        "tokenizer.chat_template" | "general.name" => None,
        _ => Some(v.clone()),
    });
    let (status, model) = load(&path);
    assert_eq!(status, ROCMFORGE_OK, "{}", last_error());
    let mut text: *const c_char = std::ptr::null();
    // SAFETY: live model, valid out-pointer.
    let status = unsafe { rocmforge_model_chat_template(model, &mut text) };
    assert_eq!(status, ROCMFORGE_ERR_NO_CHAT_TEMPLATE);
    assert!(last_error().contains("tokenizer.chat_template"));
    assert!(text.is_null(), "out-param written on failure");
    // SAFETY: as above.
    assert_eq!(
        unsafe { rocmforge_model_name(model, &mut text) },
        ROCMFORGE_ERR_NOT_FOUND
    );
    assert!(last_error().contains("general.name"));

    let role = CString::new("user").unwrap();
    let content = CString::new("Hi").unwrap();
    let (roles, contents) = ([role.as_ptr()], [content.as_ptr()]);
    let mut buf = [0 as c_char; 256];
    let mut n = 0usize;
    // SAFETY: arrays of one valid string each; buffer of 256 bytes.
    let status = unsafe {
        rocmforge_chat_apply(
            model,
            std::ptr::null(),
            roles.as_ptr(),
            contents.as_ptr(),
            1,
            true,
            buf.as_mut_ptr(),
            buf.len(),
            &mut n,
        )
    };
    assert_eq!(status, ROCMFORGE_ERR_NO_CHAT_TEMPLATE);
    assert!(last_error().contains("none was given"), "{}", last_error());
    // A template given by the caller still works.
    let template =
        CString::new("{% for m in messages %}[{{ m.role }}] {{ m.content }}{% endfor %}").unwrap();
    // SAFETY: as above.
    let status = unsafe {
        rocmforge_chat_apply(
            model,
            template.as_ptr(),
            roles.as_ptr(),
            contents.as_ptr(),
            1,
            true,
            buf.as_mut_ptr(),
            buf.len(),
            &mut n,
        )
    };
    assert_eq!(status, ROCMFORGE_OK);
    // SAFETY: NUL-terminated on success.
    assert_eq!(
        unsafe { CStr::from_ptr(buf.as_ptr()) }.to_str().unwrap(),
        "[user] Hi"
    );
    // SAFETY: live model, freed once.
    unsafe { rocmforge_model_free(model) };
    let _ = std::fs::remove_file(&path);
}

#[test]
fn unsupported_architecture_and_broken_tokenizer_have_their_statuses() {
    let path = scratch("gpt9.gguf");
    let mut w = GgufWriter::new();
    w.add_kv("general.architecture", Value::from("gpt9"))
        .unwrap();
    w.write_to(&path).unwrap();
    let (status, model) = load(&path);
    assert_eq!(status, ROCMFORGE_ERR_UNSUPPORTED);
    assert!(last_error().contains("gpt9"), "{}", last_error());
    // The message names what this build runs instead.
    assert!(
        last_error().contains("this build runs: llama, qwen2, qwen3, gemma3, phi3"),
        "{}",
        last_error()
    );
    assert!(model.is_null());

    let Some(src) = common::model_path(common::SMOLLM2) else {
        return;
    };
    let path = scratch("bad-tokenizer.gguf");
    copy_with(&src, &path, |key, v| match key {
        "tokenizer.ggml.model" => Some(Value::from("no-such-vocab")),
        _ => Some(v.clone()),
    });
    let (status, model) = load(&path);
    assert_eq!(status, ROCMFORGE_ERR_TOKENIZER, "{}", last_error());
    assert!(last_error().contains("no-such-vocab"), "{}", last_error());
    assert!(model.is_null());
    let _ = std::fs::remove_file(&path);
}
