use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = ferroflux::cli::Cli::parse();
    match ferroflux::cli::run(cli).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("✗ {err:#}");
            ExitCode::from(2)
        }
    }
}
