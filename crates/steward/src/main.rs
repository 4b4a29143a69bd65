//! `steward`: operator software for SCS OpenStack clouds.
//!
//! This binary parses arguments, loads the configuration, calls the library crates and formats
//! their results. Exit codes: 0 ok, 1 ran and found problems, 2 usage or runtime error.

mod cli;
mod output;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc's allocator: reports and decoding allocate millions of small
/// JSON values, and glibc's malloc/free were a third of a 1,000,000-fact report's CPU time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(cli.run()) {
        Ok(code) => code,
        Err(error) => {
            if is_broken_pipe(&error) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
