//! The library as users install and consume it: scripts/install.sh into a prefix with a
//! multiarch libdir and into a DESTDIR staging area with the default layout; the installed
//! files (stripped libraries with their debug info apart, the soname links of the soname
//! policy, headers, licenses, changelog, pkg-config file, CMake package); a CMake consumer
//! project (tests/cpp/cmake-consumer) built against both, shared and static; a fully static
//! `cc -static` program linked through `pkg-config --static`; and the C++ wrapper
//! (include/rocmforge.hpp): the header alone, its test program natively and under valgrind.
//! Every program that generates prints the same greedy text as examples-c/simple.c.

mod common;

use common::cbuild::{
    build_c_library, check_passed, library_stamp, repo, run, soversion, stdout, target_profile_dir,
    valgrind, FileLock,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const PROMPT: &str = "The capital of France is";
const N_PREDICT: &str = "16";
/// The run-time prefix of the DESTDIR install (nothing is written there).
const STAGED_PREFIX: &str = "/opt/rocmforge-destdir-test";
const CXXFLAGS: [&str; 6] = [
    "-std=c++17",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-pedantic",
    "-O1",
];

struct Installed {
    /// Installed with `--libdir lib/<multiarch>`.
    prefix: PathBuf,
    libdir: PathBuf,
    /// DESTDIR of the second install, whose files are under DESTDIR + STAGED_PREFIX.
    destdir: PathBuf,
    /// Programs built once against `prefix`: simple (C), simple_cpp, test_hpp.
    build: PathBuf,
    /// What examples-c/simple.c, linked to the shared library, prints for PROMPT.
    reference: String,
}

impl Installed {
    fn staged(&self) -> PathBuf {
        self.destdir.join(STAGED_PREFIX.trim_start_matches('/'))
    }

    fn pkg_config(&self) -> Command {
        let mut cmd = Command::new("pkg-config");
        cmd.env("PKG_CONFIG_PATH", self.libdir.join("pkgconfig"));
        cmd
    }

    fn pkg_config_flags(&self, args: &[&str]) -> Vec<String> {
        stdout(&run(self.pkg_config().args(args).arg("rocmforge")))
            .split_whitespace()
            .map(String::from)
            .collect()
    }
}

/// The multiarch libdir name (lib/x86_64-linux-gnu on Debian), which CMake searches.
fn multiarch_libdir() -> String {
    let out = run(Command::new("cc").arg("-print-multiarch"));
    let arch = stdout(&out).trim().to_string();
    if arch.is_empty() {
        "lib64".into()
    } else {
        format!("lib/{arch}")
    }
}

/// Installs twice from target/<profile> under target/<profile>/cpp-install and builds the
/// shared programs, once per library build (first test process, under a lock; a stamp
/// records the library it was made from).
fn installed() -> &'static Installed {
    static INSTALLED: OnceLock<Installed> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let from = target_profile_dir();
        let root = from.join("cpp-install");
        std::fs::create_dir_all(&root).expect("cpp-install dir");
        let _lock = FileLock::acquire(&root.join("lock"));
        build_c_library(&from);
        let stamp = library_stamp(&from);
        let prefix = root.join("prefix");
        let libdir = prefix.join(multiarch_libdir());
        let destdir = root.join("stage");
        let build = root.join("build");
        let installed = |reference| Installed {
            prefix: prefix.clone(),
            libdir: libdir.clone(),
            destdir: destdir.clone(),
            build: build.clone(),
            reference,
        };
        let stamp_file = root.join("stamp");
        let reference_file = root.join("reference.txt");
        if std::fs::read_to_string(&stamp_file).ok().as_deref() == Some(stamp.as_str()) {
            return installed(std::fs::read_to_string(&reference_file).expect("reference"));
        }
        for d in [&prefix, &destdir, &build] {
            let _ = std::fs::remove_dir_all(d);
        }
        let install = repo().join("scripts/install.sh");
        run(Command::new("bash")
            .arg(&install)
            .arg(&prefix)
            .arg("--libdir")
            .arg(multiarch_libdir())
            .arg("--from")
            .arg(&from));
        run(Command::new("bash")
            .arg(&install)
            .arg(STAGED_PREFIX)
            .arg("--from")
            .arg(&from)
            .env("DESTDIR", &destdir));
        let result = installed(String::new());
        std::fs::create_dir_all(&build).expect("build dir");
        let cflags = result.pkg_config_flags(&["--cflags"]);
        let libs = result.pkg_config_flags(&["--libs"]);
        let rpath = format!("-Wl,-rpath,{}", libdir.display());
        run(Command::new("cc")
            .args(["-std=c99", "-D_POSIX_C_SOURCE=200809L", "-O1"])
            .arg(repo().join("examples-c/simple.c"))
            .arg("-o")
            .arg(build.join("simple"))
            .args(&cflags)
            .args(&libs)
            .arg(&rpath));
        for name in ["simple", "test_hpp"] {
            let out = if name == "simple" { "simple_cpp" } else { name };
            run(Command::new("c++")
                .args(CXXFLAGS)
                .arg(repo().join(format!("tests/cpp/{name}.cpp")))
                .arg("-o")
                .arg(build.join(out))
                .args(&cflags)
                .args(&libs)
                .arg(&rpath));
        }
        let reference = match model() {
            Some(m) => stdout(&run(Command::new(build.join("simple"))
                .arg(m)
                .args([PROMPT, N_PREDICT]))),
            None => String::new(),
        };
        std::fs::write(&reference_file, &reference).expect("reference");
        std::fs::write(&stamp_file, stamp).expect("stamp");
        installed(reference)
    })
}

fn model() -> Option<PathBuf> {
    common::model_path(common::SMOLLM2)
}

/// Scratch folder for this test process (nextest runs each test in its own process).
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rocmforge-cpp-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn generate(program: &Path, model: &Path) -> String {
    stdout(&run(Command::new(program)
        .arg(model)
        .args([PROMPT, N_PREDICT])))
}

fn section_names(file: &Path) -> String {
    stdout(&run(Command::new("readelf").arg("-SW").arg(file)))
}

fn is_dynamic(program: &Path) -> bool {
    stdout(&run(Command::new("readelf").arg("-lW").arg(program))).contains("INTERP")
}

#[test]
fn install_lays_out_stripped_libraries_with_their_debug_info_apart() {
    let inst = installed();
    let version = env!("CARGO_PKG_VERSION");
    let soname = format!("librocmforge.so.{}", soversion());
    let real = format!("librocmforge.so.{version}");
    let lib = &inst.libdir;
    assert_eq!(
        std::fs::read_link(lib.join(&soname)).unwrap(),
        Path::new(&real)
    );
    assert_eq!(
        std::fs::read_link(lib.join("librocmforge.so")).unwrap(),
        Path::new(&soname)
    );
    let dynamic = stdout(&run(Command::new("readelf").arg("-d").arg(lib.join(&real))));
    assert!(
        dynamic.contains(&format!("Library soname: [{soname}]")),
        "{dynamic}"
    );

    // The .so: no debug sections, a debug link to LIBDIR/.debug/, which has them.
    let so_sections = section_names(&lib.join(&real));
    assert!(!so_sections.contains(".debug_info"), "{so_sections}");
    assert!(so_sections.contains(".gnu_debuglink"), "{so_sections}");
    let link = stdout(&run(Command::new("readelf")
        .args(["--string-dump=.gnu_debuglink"])
        .arg(lib.join(&real))));
    let debug_name = format!("{real}.debug");
    assert!(link.contains(&debug_name), "{link}");
    let debug = lib.join(".debug").join(&debug_name);
    assert!(section_names(&debug).contains(".debug_info"));
    let built = target_profile_dir();
    let size = |p: &Path| std::fs::metadata(p).unwrap().len();
    assert!(size(&lib.join(&real)) < size(&built.join("librocmforge.so")) / 2);

    // The .a: symbols kept, debug sections gone.
    let archive = lib.join("librocmforge.a");
    assert!(!section_names(&archive).contains(".debug_info"));
    let symbols = stdout(&run(Command::new("nm")
        .args(["--defined-only", "-g"])
        .arg(&archive)));
    assert!(symbols.contains(" T rocmforge_model_load"));

    for (installed, source) in [
        ("include/rocmforge.h", "include/rocmforge.h"),
        ("include/rocmforge.hpp", "include/rocmforge.hpp"),
        ("share/doc/rocmforge/LICENSE-MIT", "LICENSE-MIT"),
        ("share/doc/rocmforge/LICENSE-APACHE", "LICENSE-APACHE"),
        ("share/doc/rocmforge/CHANGELOG.md", "CHANGELOG.md"),
    ] {
        assert_eq!(
            std::fs::read(inst.prefix.join(installed)).unwrap(),
            std::fs::read(repo().join(source)).unwrap(),
            "{installed}"
        );
    }
    for f in ["rocmforge-config.cmake", "rocmforge-config-version.cmake"] {
        assert!(lib.join("cmake/rocmforge").join(f).exists(), "{f}");
    }
}

#[test]
fn destdir_stages_the_files_and_the_pc_names_the_final_prefix() {
    let inst = installed();
    let staged = inst.staged();
    let soname = format!("librocmforge.so.{}", soversion());
    for f in [
        format!("lib/{soname}"),
        "lib/librocmforge.a".into(),
        "lib/pkgconfig/rocmforge.pc".into(),
        "lib/cmake/rocmforge/rocmforge-config.cmake".into(),
        "include/rocmforge.hpp".into(),
    ] {
        assert!(
            staged.join(&f).exists(),
            "{f} missing under {}",
            staged.display()
        );
    }
    assert!(!Path::new(STAGED_PREFIX).exists(), "DESTDIR was ignored");
    let pc = std::fs::read_to_string(staged.join("lib/pkgconfig/rocmforge.pc")).unwrap();
    assert!(pc.contains(&format!("prefix={STAGED_PREFIX}\n")), "{pc}");
    assert!(
        pc.contains(&format!("libdir={STAGED_PREFIX}/lib\n")),
        "{pc}"
    );
    // The description says what the library is now, and the static flags link with -static.
    assert!(!pc.contains("later"), "{pc}");
    assert!(!pc.contains("gcc_s"), "{pc}");
}

/// Configures and builds tests/cpp/cmake-consumer against `prefix` in `dir/name`; returns the
/// build dir.
fn cmake_consumer(prefix: &Path, link: &str, dir: &Path, name: &str) -> PathBuf {
    let build = dir.join(name);
    run(Command::new("cmake")
        .arg("-S")
        .arg(repo().join("tests/cpp/cmake-consumer"))
        .arg("-B")
        .arg(&build)
        .arg(format!("-DCMAKE_PREFIX_PATH={}", prefix.display()))
        .arg(format!("-DROCMFORGE_LINK={link}"))
        .arg("-DCMAKE_BUILD_TYPE=Release"));
    run(Command::new("cmake")
        .arg("--build")
        .arg(&build)
        .args(["--parallel", "2"]));
    build
}

#[test]
fn cmake_consumer_builds_and_runs_shared_and_static() {
    let inst = installed();
    let dir = scratch("cmake");
    let mut builds = Vec::new();
    for link in ["shared", "static"] {
        builds.push((link, cmake_consumer(&inst.prefix, link, &dir, link)));
    }
    // The DESTDIR-staged tree works where it lies: the CMake files find the library relative
    // to themselves.
    builds.push((
        "staged",
        cmake_consumer(&inst.staged(), "shared", &dir, "staged"),
    ));
    for (link, build) in &builds {
        for program in ["simple_c", "simple_cpp"] {
            let exe = build.join(program);
            let deps = stdout(&run(Command::new("ldd").arg(&exe)));
            match *link {
                "static" => assert!(!deps.contains("librocmforge"), "{deps}"),
                "staged" => assert!(
                    deps.contains(&format!("{}/lib/", inst.staged().display())),
                    "{deps}"
                ),
                _ => assert!(
                    deps.contains(&format!("{}/", inst.libdir.display())),
                    "{deps}"
                ),
            }
            if let Some(model) = model() {
                assert_eq!(generate(&exe, &model), inst.reference, "{link} {program}");
            }
        }
    }
    // The version file follows the soname policy: 0.1.z does not serve a request for 0.2.
    let out = Command::new("cmake")
        .arg("-S")
        .arg(repo().join("tests/cpp/cmake-consumer"))
        .arg("-B")
        .arg(dir.join("consumer-0.2"))
        .arg(format!("-DCMAKE_PREFIX_PATH={}", inst.prefix.display()))
        .arg("-DROCMFORGE_VERSION_REQUEST=0.2")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && text.contains(env!("CARGO_PKG_VERSION")),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fully_static_program_links_through_pkg_config_static() {
    let inst = installed();
    let dir = scratch("static");
    let exe = dir.join("simple-static");
    run(Command::new("cc")
        .args(["-static", "-std=c99", "-D_POSIX_C_SOURCE=200809L", "-O1"])
        .arg(repo().join("examples-c/simple.c"))
        .arg("-o")
        .arg(&exe)
        .args(inst.pkg_config_flags(&["--static", "--cflags", "--libs"])));
    assert!(!is_dynamic(&exe), "not a static executable");
    assert!(is_dynamic(&inst.build.join("simple")));
    if let Some(model) = model() {
        assert_eq!(generate(&exe, &model), inst.reference);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn hpp_compiles_alone_as_cpp17_and_cpp20() {
    let header = repo().join("include/rocmforge.hpp");
    for std in ["-std=c++17", "-std=c++20"] {
        run(Command::new("c++")
            .args(["-x", "c++", std])
            .args([
                "-Wall",
                "-Wextra",
                "-Werror",
                "-pedantic",
                "-Wconversion",
                "-Wshadow",
            ])
            .args(["-Wold-style-cast", "-fsyntax-only"])
            .arg("-I")
            .arg(repo().join("include"))
            .arg(&header));
    }
}

#[test]
fn cpp_simple_prints_the_c_example_text() {
    let inst = installed();
    let Some(model) = model() else { return };
    let text = generate(&inst.build.join("simple_cpp"), &model);
    assert_eq!(text, inst.reference);
    assert!(
        text.starts_with(PROMPT) && text.len() > PROMPT.len() + 10,
        "{text}"
    );
}

#[test]
fn cpp_wrapper_tests_pass() {
    let inst = installed();
    let Some(model) = model() else { return };
    let dir = scratch("hpp");
    check_passed(&run(Command::new(inst.build.join("test_hpp"))
        .arg(&model)
        .arg(&dir)
        .arg("--quantize")));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The wrapper's test under valgrind: it loads the model once and evaluates a few tokens
/// (about half a minute; each token costs seconds under valgrind).
#[test]
fn cpp_wrapper_tests_are_valgrind_clean() {
    let inst = installed();
    let Some(model) = model() else { return };
    let dir = scratch("hpp-valgrind");
    check_passed(&valgrind(
        &inst.build.join("test_hpp"),
        &[model.as_os_str(), dir.as_os_str()],
        b"",
    ));
    let _ = std::fs::remove_dir_all(&dir);
}
