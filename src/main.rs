use clap::Parser;

fn main() {
    // Die quietly on a closed pipe (`dovetail list ... | head`), like other Unix tools,
    // instead of panicking on the failed write.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE at start-up, before any thread.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            // RUST_LOG, as every tracing program reads it; DOVETAIL_LOG, the older name, wins
            // when both are set.
            tracing_subscriber::EnvFilter::try_from_env("DOVETAIL_LOG")
                .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = dovetail::cli::Cli::parse();
    match dovetail::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            let e: anyhow::Error = e.into();
            eprintln!("dovetail: error: {e}");
            std::process::exit(2);
        }
    }
}
