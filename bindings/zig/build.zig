//! The rocmforge Zig package: a module over translate-c of the installed rocmforge.h, linked
//! through pkg-config, plus its tests and the `simple` example.
//!
//!   zig build test                 tests against the real library (ROCMFORGE_MODEL=model.gguf)
//!   zig build run -- MODEL PROMPT N
//!   zig build -Dlinkage=static     link librocmforge.a instead of the .so
//!
//! PKG_CONFIG_PATH must reach the installed prefix's lib/pkgconfig (scripts/install.sh).
const std = @import("std");

pub fn build(b: *std.Build) void {
    const target = b.standardTargetOptions(.{});
    const optimize = b.standardOptimizeOption(.{});
    const linkage = b.option(std.builtin.LinkMode, "linkage", "link librocmforge dynamically (default) or statically") orelse .dynamic;

    // Zig has no @cImport any more: the header goes through the build system's translate-c.
    const translated = b.addTranslateC(.{
        .root_source_file = b.path("src/c.h"),
        .target = target,
        .optimize = optimize,
    });
    translated.linkSystemLibrary("rocmforge", .{}); // pkg-config's -I for <rocmforge.h>

    const mod = b.addModule("rocmforge", .{
        .root_source_file = b.path("src/rocmforge.zig"),
        .target = target,
        .optimize = optimize,
        .link_libc = true,
        .imports = &.{.{ .name = "c", .module = translated.createModule() }},
    });
    mod.linkSystemLibrary("rocmforge", .{ .preferred_link_mode = linkage, .search_strategy = .mode_first });
    if (linkage == .static) {
        // The Rust standard library inside the archive unwinds through libunwind's
        // _Unwind_* (pkg-config's Libs.private names libgcc_s, which Zig does not ship).
        mod.linkSystemLibrary("unwind", .{});
        for ([_][]const u8{ "pthread", "dl", "m", "rt", "util" }) |lib| mod.linkSystemLibrary(lib, .{});
    }

    const exe = b.addExecutable(.{
        .name = "simple",
        .root_module = b.createModule(.{
            .root_source_file = b.path("examples/simple.zig"),
            .target = target,
            .optimize = optimize,
            .imports = &.{.{ .name = "rocmforge", .module = mod }},
        }),
    });
    b.installArtifact(exe);
    const run = b.addRunArtifact(exe);
    run.addPassthruArgs();
    b.step("run", "Run the simple example").dependOn(&run.step);

    const tests = b.addTest(.{ .root_module = mod });
    const run_tests = b.addRunArtifact(tests);
    // The tests read the model and the library at run time, which the cache does not see.
    run_tests.has_side_effects = true;
    b.step("test", "Run the tests against the real library and model").dependOn(&run_tests.step);
}
