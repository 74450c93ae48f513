fn main() {
    // The command line merged with the config file: a bad command line is clap's usual
    // message and exit 2; a bad file, a one-line error and exit 2.
    let cli = match dovetail::cli::config::load(std::env::args_os()) {
        Ok(cli) => cli,
        Err(dovetail::cli::CliError::Usage(e)) => e.exit(),
        Err(e) => {
            eprintln!("dovetail: error: {e}");
            std::process::exit(2);
        }
    };
    // Commands that print die quietly on a closed pipe (`dovetail list ... | head`), like
    // other Unix tools, instead of panicking on the failed write. A node (and the demo,
    // which runs nodes) keeps Rust's default of ignoring SIGPIPE: a client that closes its
    // connection while the node writes to it must end that session, not kill the node.
    let serves = matches!(
        cli.cmd,
        dovetail::cli::Cmd::Node(_) | dovetail::cli::Cmd::Demo(_)
    );
    #[cfg(unix)]
    if !serves {
        // SAFETY: restoring the default disposition of SIGPIPE at start-up, before any
        // thread is started.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    tune_malloc();
    tracing_subscriber::fmt()
        .with_env_filter(log_filter())
        .with_writer(std::io::stderr)
        .init();
    match dovetail::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            let e: anyhow::Error = e.into();
            eprintln!("dovetail: error: {e}");
            std::process::exit(2);
        }
    }
}

/// The log filter: `DOVETAIL_LOG` (the older name) or else `RUST_LOG`, as every tracing
/// program reads it, or else `warn`. automerge instruments its sync and load functions with
/// INFO spans whose fields the formatter renders (change hashes, heads) on every call:
/// at `info` that was a fifth of a node's CPU under replication load, so automerge is held
/// at `warn` unless the filter names it.
fn log_filter() -> tracing_subscriber::EnvFilter {
    let spec = std::env::var("DOVETAIL_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "warn".into());
    let spec = if spec.contains("automerge") {
        spec
    } else {
        format!("{spec},automerge=warn")
    };
    tracing_subscriber::EnvFilter::try_new(&spec).unwrap_or_else(|e| {
        eprintln!("dovetail: ignoring the log filter {spec:?}: {e}");
        tracing_subscriber::EnvFilter::new("warn,automerge=warn")
    })
}

/// Fixes glibc's thresholds for returning freed memory to the system. By default glibc
/// raises its mmap threshold to the largest block freed so far (up to 32 MiB): after the
/// first multi-megabyte sync message or document snapshot, such buffers come from the heap
/// and what they leave there stays resident. A 1M-message `dovetail sync` peaked at 322
/// MiB that way and at 244 MiB with these (the memory budget is 256 MiB).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_malloc() {
    // SAFETY: mallopt at start-up, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_malloc() {}
