#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use ferroflux::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The local verbs (`build DIR`, `crds`, `version`, ...) await nothing and run on the calling
    // thread; the others get tokio's runtime.
    let result = if cli.command.needs_runtime() {
        tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(anyhow::Error::from).and_then(|runtime| {
            let result = runtime.block_on(ferroflux::cli::run(cli));
            // A blocking task that never ends (a stuck build abandoned at shutdown) must not hold
            // the exit, as dropping the runtime would.
            runtime.shutdown_timeout(std::time::Duration::from_secs(1));
            result
        })
    } else {
        futures::executor::block_on(ferroflux::cli::run(cli))
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("✗ {}", error_chain(&err));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes, `outer: inner`, without repeating a cause that a message already
/// quotes (our error types include their source in their own text).
fn error_chain(err: &anyhow::Error) -> String {
    let mut message = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
    }
    message
}
