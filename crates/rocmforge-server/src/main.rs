//! `rocmforge-server`: the OpenAI-compatible server (see the library half, `lib.rs`).

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "rocmforge-server",
    version,
    about = "OpenAI-compatible server for ROCmForge"
)]
struct Cli {
    #[command(flatten)]
    server: rocmforge_server::Args,
}

fn main() -> std::process::ExitCode {
    rocmforge_server::run(Cli::parse().server)
}
