//! simple: load a model, tokenize a prompt and stream a greedy continuation; the Zig twin of
//! examples-c/simple.c, printing exactly what it prints.
//!
//!   simple MODEL.gguf [PROMPT] [N_PREDICT]
const std = @import("std");
const rf = @import("rocmforge");

pub fn main(init: std.process.Init) !void {
    const args = try init.minimal.args.toSlice(init.arena.allocator());
    if (args.len < 2) {
        std.debug.print("usage: {s} MODEL.gguf [PROMPT] [N_PREDICT]\n", .{args[0]});
        std.process.exit(2);
    }
    const prompt: []const u8 = if (args.len > 2) args[2] else "The capital of France is";
    const n_predict = if (args.len > 3) try std.fmt.parseInt(usize, args[3], 10) else 32;

    var buffer: [4096]u8 = undefined;
    var stdout: std.Io.File.Writer = .init(.stdout(), init.io, &buffer);
    run(init.gpa, &stdout.interface, args[1], prompt, n_predict) catch |err| {
        std.debug.print("{s}: {s}\n", .{ @errorName(err), rf.lastError() });
        std.process.exit(1);
    };
}

fn run(gpa: std.mem.Allocator, out: *std.Io.Writer, path: [:0]const u8, prompt: []const u8, n_predict: usize) !void {
    const model = try rf.Model.load(path, .{});
    defer model.deinit();
    const ctx = try rf.Context.init(model, .{});
    defer ctx.deinit();
    const sampler = try rf.Sampler.init(&.{.greedy});
    defer sampler.deinit();

    const tokens = try model.tokenize(gpa, prompt, true, true);
    defer gpa.free(tokens);
    try ctx.eval(tokens, 0);

    try out.writeAll(prompt);
    var piece: [64]u8 = undefined;
    for (0..n_predict) |_| {
        const next = try sampler.sample(ctx, -1);
        try sampler.accept(next);
        if (try model.isEog(next)) break;
        var len: usize = 0;
        try out.writeAll(try model.tokenToPiece(next, false, &piece, &len));
        try out.flush(); // stream, as simple.c does
        try ctx.eval(&.{next}, 0);
    }
    try out.writeAll("\n");
    try out.flush();
}
