//! Cluster benchmarks: real `dovetail node` processes on 127.0.0.1.
//!
//! ```text
//! cargo run --release --example cluster_bench -- latency [--nodes 3] [--rate 100] [--secs 60]
//! cargo run --release --example cluster_bench -- initial [--messages 10000,100000]
//! ```

mod initial;
mod latency;
mod procs;

use anyhow::{bail, Result};

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("latency") => {
            let a = latency::Args {
                nodes: arg(&args, "--nodes", 3),
                rate: arg(&args, "--rate", 100),
                secs: arg(&args, "--secs", 60),
            };
            let f = latency::run(&a)?;
            print!("{}", latency::report(&a, &f));
        }
        Some("initial") => {
            let sizes: String = arg(&args, "--messages", "10000,100000".to_string());
            for n in sizes.split(',') {
                let n: usize = n.parse()?;
                print!("{}", initial::report(&initial::run(n)?));
                use std::io::Write;
                std::io::stdout().flush()?;
            }
        }
        _ => bail!("usage: cluster_bench (latency|initial) [options]"),
    }
    Ok(())
}
