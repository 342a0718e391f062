//! Hostile model files: `/dev/zero`, a FIFO and a folder as a model path, a path that is not
//! UTF-8, randomly mutated model files (in a child process), and files that parse but disagree
//! with the model.

use crate::common::capi::{self, Ctx, CtxOpts, Model, Rng};
use crate::common::child::{self, Limits, Outcome};
use crate::{
    child_after, expect_report, panic_text, report_result, report_status, run_child, smollm2,
    status_of, timed, write_tiny, Scratch, PROMPT_RETURN,
};
use rocmforge::ffi::status::rocmforge_status::{self, *};
use rocmforge::gguf::GgufFile;
use rocmforge::quant::GgmlType;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Statuses a model load may answer for a broken file.
const LOAD_FAILURES: [rocmforge_status; 5] = [
    ROCMFORGE_ERR_IO,
    ROCMFORGE_ERR_INVALID_MODEL,
    ROCMFORGE_ERR_UNSUPPORTED,
    ROCMFORGE_ERR_TOKENIZER,
    ROCMFORGE_ERR_OUT_OF_MEMORY,
];

/// arg: "<0|1 mmap>:<path>".
pub(crate) fn child_load(arg: &str) {
    let (mmap, path) = arg.split_once(':').unwrap();
    let (r, t) = timed(|| Model::load(Path::new(path), mmap == "1"));
    report_result("hostile", &r, t);
    drop(r);
    child_after();
}

/// arg: "<tiny|real>:<file>:<count>". Loads `count` random mutations of the file with mmap on
/// and off; every OK load then gets a small context and an eval. Reports "load_<i>_<mmap>" and
/// "eval_<i>_<mmap>" per attempt and "done" at the end.
pub(crate) fn child_mutate(arg: &str) {
    use std::os::unix::fs::FileExt;
    let mut parts = arg.splitn(3, ':');
    let (kind, file, count) = (
        parts.next().unwrap(),
        PathBuf::from(parts.next().unwrap()),
        parts.next().unwrap().parse::<usize>().unwrap(),
    );
    let mut rng = Rng::from_env(&format!("mutations of the {kind} model"));
    let original = std::fs::read(&file).unwrap();
    // The region mutated: the whole tiny file; the real model's header (metadata, vocabulary,
    // tensor infos), with its first and last 16 KiB (counts, keys, tensor infos) favoured.
    let region = match kind {
        "tiny" => original.len(),
        _ => GgufFile::open(&file).unwrap().data_offset() as usize,
    };
    let work = file.with_extension("mutated.gguf");
    if kind == "tiny" {
        std::fs::write(&work, &original).unwrap();
    } else {
        std::fs::copy(&file, &work).unwrap();
    }
    let handle = std::fs::OpenOptions::new().write(true).open(&work).unwrap();
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut done = 0;
    for i in 0..count {
        if Instant::now() > deadline {
            break;
        }
        // A mutation: 1-4 bytes, or a 4/8-byte field set to an extreme, or a truncation.
        let pick = |rng: &mut Rng| -> usize {
            match rng.below(4) {
                0 => rng.below(16384.min(region as u64)) as usize,
                1 => region - 1 - rng.below(16384.min(region as u64)) as usize,
                _ => rng.below(region as u64) as usize,
            }
        };
        let mut patches: Vec<(usize, Vec<u8>)> = Vec::new();
        let mut truncate_to = None;
        match rng.below(10) {
            0..=5 => {
                for _ in 0..1 + rng.below(4) {
                    patches.push((pick(&mut rng), vec![rng.next() as u8]));
                }
            }
            6 | 7 => {
                let at = pick(&mut rng).min(region - 8);
                let v = [u64::MAX, 0, 1 << 32, u32::MAX as u64, 1 << 62][rng.below(5) as usize];
                let len = if rng.below(2) == 0 { 4 } else { 8 };
                patches.push((at, v.to_le_bytes()[..len].to_vec()));
            }
            8 => patches.push((pick(&mut rng), vec![original[pick(&mut rng)]])),
            _ => truncate_to = Some(rng.below(original.len() as u64)),
        }
        for (at, bytes) in &patches {
            handle.write_all_at(bytes, *at as u64).unwrap();
        }
        if let Some(n) = truncate_to {
            handle.set_len(n).unwrap();
        }
        eprintln!("mutation {i}: patches {patches:?} truncate {truncate_to:?}");
        for mmap in [false, true] {
            let label = format!("{i}_{}", mmap as u8);
            let (r, t) = timed(|| Model::load(&work, mmap));
            report_result(&format!("load_{label}"), &r, t);
            if let Ok(m) = r {
                let opts = CtxOpts {
                    n_ctx: 32,
                    n_batch: 32,
                    ..CtxOpts::default()
                };
                let (s, t) = timed(|| match Ctx::new(&m, opts) {
                    Ok(ctx) => {
                        let n = m.n_vocab().min(3) as i32;
                        ctx.eval(&(0..n).collect::<Vec<_>>(), 0)
                    }
                    Err(f) => f.status,
                });
                report_status(&format!("eval_{label}"), s, t);
            }
        }
        // Undo the mutation.
        if truncate_to.is_some() {
            handle.write_all_at(&original, 0).unwrap();
        } else {
            for (at, bytes) in &patches {
                handle
                    .write_all_at(&original[*at..*at + bytes.len()], *at as u64)
                    .unwrap();
            }
        }
        done += 1;
    }
    drop(handle);
    let _ = std::fs::remove_file(&work);
    child::report("done", 0, Duration::ZERO, &done.to_string());
    child_after();
}

#[test]
fn dev_zero_fifo_and_directory_return_a_status_quickly_with_mmap_on_and_off() {
    let Some(_) = smollm2() else {
        return;
    };
    let dir = Scratch::new("paths");
    let fifo = dir.path("fifo.gguf");
    let c = capi::c_path(&fifo);
    // SAFETY: NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let folder = dir.path("folder.gguf");
    std::fs::create_dir(&folder).unwrap();
    let mut failures = Vec::new();
    for path in [Path::new("/dev/zero"), &fifo, &folder] {
        for mmap in [0, 1] {
            let arg = format!("{mmap}:{}", path.display());
            let o = run_child("load", &arg, Limits::two_gib(25));
            let r = std::panic::catch_unwind(|| {
                o.assert_clean_exit();
                expect_report(
                    &o,
                    "hostile",
                    &[ROCMFORGE_ERR_IO, ROCMFORGE_ERR_INVALID_MODEL],
                    PROMPT_RETURN,
                );
                expect_report(&o, "after", &[ROCMFORGE_OK], Duration::MAX);
                eprintln!("{arg}: {:?}", o.report("hostile"));
            });
            if let Err(e) = r {
                failures.push(panic_text(e));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Checks a mutation child: it finished, and every load and eval answered a status.
fn check_mutations(o: &Outcome, expected_at_least: usize) {
    o.assert_clean_exit();
    let reports = o.reports();
    let done: usize = o.report("done").message.parse().unwrap();
    assert!(
        done >= expected_at_least,
        "only {done} mutations ran in the time given"
    );
    let mut histogram = std::collections::BTreeMap::new();
    for (label, r) in &reports {
        let status = status_of(r.status);
        if label.starts_with("load_") {
            *histogram.entry(format!("load {status:?}")).or_insert(0) += 1;
            assert!(
                status.is_some_and(|s| s == ROCMFORGE_OK || LOAD_FAILURES.contains(&s)),
                "{label}: unexpected status {status:?}: {}\n{}",
                r.message,
                o.transcript()
            );
        } else if label.starts_with("eval_") {
            *histogram.entry(format!("eval {status:?}")).or_insert(0) += 1;
            assert!(
                status.is_some_and(|s| s != ROCMFORGE_ERR_INTERNAL && s != ROCMFORGE_ERR_POISONED),
                "{label}: {status:?}: {}",
                r.message
            );
        }
    }
    eprintln!("{} mutations: {histogram:?}", done);
    expect_report(o, "after", &[ROCMFORGE_OK], Duration::MAX);
}

#[test]
fn mutated_tiny_models_load_or_fail_with_a_status_mmap_on_and_off() {
    let Some(_) = smollm2() else {
        return;
    };
    let dir = Scratch::new("mutate-tiny");
    let tiny = dir.path("tiny.gguf");
    write_tiny(&tiny);
    let arg = format!("tiny:{}:200", tiny.display());
    let o = run_child("mutate", &arg, Limits::two_gib(60));
    check_mutations(&o, 200);
}

#[test]
fn mutated_smollm2_headers_load_or_fail_with_a_status_mmap_on_and_off() {
    let Some(src) = smollm2() else {
        return;
    };
    let dir = Scratch::new("mutate-real");
    let copy = dir.path("smollm2.gguf");
    std::fs::copy(&src, &copy).unwrap();
    let arg = format!("real:{}:30", copy.display());
    let o = run_child("mutate", &arg, Limits::two_gib(80));
    check_mutations(&o, 10);
}

#[test]
fn a_model_path_that_is_not_utf8_loads() {
    use std::os::unix::ffi::OsStrExt;
    let Some(src) = smollm2() else {
        return;
    };
    let dir = Scratch::new("non-utf8");
    let folder = dir.0.join(std::ffi::OsStr::from_bytes(b"models-\xff\xfe"));
    std::fs::create_dir(&folder).unwrap();
    let link = folder.join(std::ffi::OsStr::from_bytes(b"smol\xff.gguf"));
    std::os::unix::fs::symlink(&src, &link).unwrap();
    assert!(link.to_str().is_none());
    for mmap in [true, false] {
        let model =
            Model::load(&link, mmap).unwrap_or_else(|f| panic!("non-UTF-8 path, mmap {mmap}: {f}"));
        assert!(model.n_vocab() > 0);
    }
}

/// Offset of the unique occurrence of `needle` in `bytes`.
fn find_unique(bytes: &[u8], needle: &[u8]) -> usize {
    let hits: Vec<usize> = bytes
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(hits.len(), 1, "{:?}", String::from_utf8_lossy(needle));
    hits[0]
}

/// Offset just after a GGUF string (u64 length, bytes) equal to `s` in `header`.
fn after_gguf_string(header: &[u8], s: &str) -> usize {
    let mut needle = (s.len() as u64).to_le_bytes().to_vec();
    needle.extend_from_slice(s.as_bytes());
    find_unique(header, &needle) + needle.len()
}

fn patch(path: &Path, at: usize, bytes: &[u8]) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut old = vec![0; bytes.len()];
    f.read_exact_at(&mut old, at as u64).unwrap();
    f.write_all_at(bytes, at as u64).unwrap();
    old
}

#[test]
fn files_that_parse_but_disagree_with_the_model_are_invalid() {
    let Some(src) = smollm2() else {
        return;
    };
    let g = GgufFile::open(&src).unwrap();
    let header = &g.as_bytes()[..g.data_offset() as usize];
    let dir = Scratch::new("wrong-files");
    let copy = dir.path("smollm2.gguf");
    std::fs::copy(&src, &copy).unwrap();
    let mut failures = Vec::new();
    let mut expect_invalid = |what: &str, needle: &str| {
        for mmap in [true, false] {
            match Model::load(&copy, mmap) {
                Err(f) if f.status == ROCMFORGE_ERR_INVALID_MODEL => {
                    eprintln!("{what}: {}", f.message);
                    if !f.message.contains(needle) {
                        failures.push(format!(
                            "{what}: the message does not name {needle:?}: {}",
                            f.message
                        ));
                    }
                }
                Err(f) => failures.push(format!(
                    "{what}, mmap {mmap}: expected INVALID_MODEL, got {f}"
                )),
                Ok(_) => failures.push(format!("{what}, mmap {mmap}: loaded")),
            }
        }
    };

    // llama.block_count lowered from 30 to 3: the file holds 27 layers the model would not use.
    let at = after_gguf_string(header, "llama.block_count");
    assert_eq!(
        header[at..at + 4],
        4u32.to_le_bytes(),
        "block_count is a u32"
    );
    assert_eq!(header[at + 4..at + 8], 30u32.to_le_bytes());
    let old = patch(&copy, at + 4, &3u32.to_le_bytes());
    expect_invalid("block_count 3", "blk.");
    patch(&copy, at + 4, &old);

    // One Q4_1 tensor (not the last in the file) retyped as F16: its size no longer agrees
    // with the space it has.
    let mut by_offset: Vec<_> = g.tensors().iter().collect();
    by_offset.sort_by_key(|t| t.offset);
    let victim = by_offset[..by_offset.len() - 1]
        .iter()
        .find(|t| t.ty == GgmlType::Q4_1)
        .expect("a Q4_1 tensor");
    let at = after_gguf_string(header, &victim.name);
    let n_dims = u32::from_le_bytes(header[at..at + 4].try_into().unwrap()) as usize;
    let ty_at = at + 4 + 8 * n_dims;
    assert_eq!(header[ty_at..ty_at + 4], GgmlType::Q4_1.id().to_le_bytes());
    patch(&copy, ty_at, &GgmlType::F16.id().to_le_bytes());
    expect_invalid(&format!("{} as F16", victim.name), &victim.name);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
