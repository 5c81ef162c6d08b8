use std::process::ExitCode;

use clap::Parser;
use ferroflux::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Only the controller needs tokio's runtime. The other verbs (`build`, `crds`, `version`)
    // await nothing, so they run on the calling thread: starting the runtime's worker threads
    // and its I/O driver was a large part of a small `ferroflux build`.
    let result = if matches!(cli.command, Command::Controller(_)) {
        tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(anyhow::Error::from).and_then(|runtime| runtime.block_on(ferroflux::cli::run(cli)))
    } else {
        futures::executor::block_on(ferroflux::cli::run(cli))
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("✗ {err:#}");
            ExitCode::from(2)
        }
    }
}
