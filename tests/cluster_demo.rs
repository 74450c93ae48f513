//! `dovetail demo` end to end: it starts its nodes, runs every step and ends converged.

mod cluster_support;

#[test]
fn the_demo_runs_and_converges() {
    let tmp = tempfile::TempDir::new().expect("tempdir");
    let keep = tmp.path().join("demo");
    let r = cluster_support::run(&[
        "demo",
        "--nodes",
        "3",
        "--messages",
        "60",
        "--keep",
        cluster_support::s(&keep),
    ]);
    assert_eq!(r.code, 0, "demo failed: {r:?}");
    assert!(r.out.contains("== diff verdict: CONVERGED"), "{}", r.out);
    // 60 split-brain and live messages, 10 while a node was away, 10 on it alone, one
    // expunged: every node shows the same 79.
    assert!(r.out.contains("messages shown: 79"), "{}", r.out);
    // Every node stopped cleanly: its data dir is free and agrees with the others.
    let dirs: Vec<String> = (1..=4)
        .map(|i| keep.join(format!("node{i}")).display().to_string())
        .collect();
    let mut args = vec!["diff"];
    args.extend(dirs.iter().map(String::as_str));
    assert_eq!(cluster_support::run(&args).code, 0);
}
