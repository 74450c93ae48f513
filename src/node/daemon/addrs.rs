//! The data dir's record of where a running node listens ([`ADDRS_FILE`]): written as the
//! addresses come up, read by tests and tools that dial the node.

/// The file, in the data dir, where a running node writes its listen addresses.
pub const ADDRS_FILE: &str = "node.addrs";

/// Prints a listen address and adds it to the data dir's [`ADDRS_FILE`].
pub(super) fn listening(file: &std::path::Path, addr: &libp2p::Multiaddr) {
    use std::io::Write;
    println!("listening on {addr}");
    // One write of the whole line: `writeln!` on a file writes each piece of the address's
    // `Display` separately, and a reader saw `/ip4/127.0.0.1/tcp/45495/p2p` (a node then
    // refused that truncated `--bootstrap`). Readers take only complete lines too.
    let line = format!("{addr}\n");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
    {
        let _ = f.write_all(line.as_bytes());
    }
}

/// The addresses a node running on `dir` listens on, from its [`ADDRS_FILE`]: only the
/// complete lines (the node may be writing the next one).
pub fn listen_addrs(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(dir.join(ADDRS_FILE))
        .map(|t| {
            t.split_inclusive('\n')
                .filter_map(|l| l.strip_suffix('\n'))
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect()
        })
        .unwrap_or_default()
}
