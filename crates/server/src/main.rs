use std::process::ExitCode;

use clap::Parser;
use idbridge_server::cli::Cli;

// Reconciliation and SCIM build and drop many small JSON values; mimalloc's per-thread
// free lists make a re-map of 100,000 individuals markedly faster than glibc's malloc.
// Built with `no_thp`: mimalloc otherwise advises transparent huge pages for its arena,
// and with THP on ("always", or "madvise" as on Debian) a few small allocations made an
// idle daemon hold 22 MiB of 2 MiB pages (BENCHMARKS.md, start-up and idle memory).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(idbridge_server::commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
