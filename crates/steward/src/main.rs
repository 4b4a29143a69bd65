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

/// Rust allocates through mimalloc, but C libraries (SQLite: its copy of every bound body, its
/// page caches) use glibc's malloc, which gives each thread that allocates its own arena and
/// keeps freed large blocks there. sqlx runs every SQLite connection on its own thread, so the
/// 20 MB bodies of one stream could be held once per connection: 381 MB peak instead of 262 MB
/// for twenty 20 MB notifications (`ingest_limits`). Two arenas are plenty for a few threads
/// that call into C.
#[allow(unsafe_code)]
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes a tuning parameter of glibc's allocator; it is called once,
    // before any thread is started.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn main() -> ExitCode {
    limit_malloc_arenas();
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
