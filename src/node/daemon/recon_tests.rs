use super::*;
use crate::net::protocol::{ReconAnswer, ReconPart, ReconRange};
use proptest::prelude::*;
use std::collections::BTreeMap;

type Heads = BTreeMap<String, Vec<[u8; 32]>>;

/// Runs a whole comparison of `a` (initiator) with `b` (responder) in memory: what `a`
/// found, round trips, and bytes both ways as postcard encodes them.
fn reconcile(a: &Heads, b: &Heads) -> (BTreeMap<String, Side>, usize, usize) {
    let (sa, sb) = (Summary::new(a), Summary::new(b));
    let mut init = Initiator::new(&sa);
    let mut bytes = 0;
    while let Some(ranges) = init.next_request().expect("request") {
        bytes += postcard::to_stdvec(&ranges).expect("encode").len();
        let answers = answer(&sb, &ranges).expect("answer");
        bytes += postcard::to_stdvec(&answers).expect("encode").len();
        init.on_answer(&ranges, answers).expect("answer taken");
    }
    let rounds = init.rounds();
    (init.finish(), rounds, bytes)
}

/// The differing documents, computed directly.
fn expected(a: &Heads, b: &Heads) -> BTreeMap<String, Side> {
    let mut out = BTreeMap::new();
    for (d, h) in a {
        match b.get(d) {
            None => {
                out.insert(d.clone(), Side::Mine);
            }
            Some(h2) if item_hash(d, h) != item_hash(d, h2) => {
                out.insert(d.clone(), Side::Both);
            }
            _ => {}
        }
    }
    for d in b.keys() {
        if !a.contains_key(d) {
            out.insert(d.clone(), Side::Theirs);
        }
    }
    out
}

fn levels(n: usize) -> usize {
    let mut l = 0;
    let mut x = n.max(1);
    while x > 1 {
        x = x.div_ceil(16);
        l += 1;
    }
    l
}

/// A realistic summary: `accounts` accounts, each an account document and 3 segments.
fn cluster(accounts: usize) -> Heads {
    let mut m = Heads::new();
    for i in 0..accounts {
        m.insert(format!("acct/user{i:05}"), vec![[i as u8; 32]]);
        for mb in 0..3 {
            m.insert(
                format!("seg/user{i:05}/mb{mb:032}/{:064}/0", 7),
                vec![[mb as u8; 32], [(i % 251) as u8; 32]],
            );
        }
    }
    m
}

#[test]
fn equal_summaries_cost_one_round_trip() {
    let a = cluster(2500);
    let (found, rounds, bytes) = reconcile(&a, &a);
    assert!(found.is_empty());
    assert_eq!(rounds, 1);
    assert!(bytes < 64, "{bytes} bytes");
    let (found, rounds, _) = reconcile(&Heads::new(), &Heads::new());
    assert!(found.is_empty());
    assert_eq!(rounds, 1);
}

#[test]
fn few_changes_among_many_documents_cost_log_rounds_and_bytes_of_the_changes() {
    let a = cluster(10_000);
    let mut b = a.clone();
    for i in (0..10_000).step_by(1000) {
        b.insert(format!("acct/user{i:05}"), vec![[9; 32], [1; 32]]);
    }
    b.remove(&format!("seg/user00005/mb{:032}/{:064}/0", 1, 7));
    b.insert("seg/user04242/new".into(), vec![[3; 32]]);
    let (found, rounds, bytes) = reconcile(&a, &b);
    assert_eq!(found, expected(&a, &b));
    assert_eq!(found.len(), 12);
    assert!(rounds <= levels(a.len()) + 1, "{rounds} rounds");
    // Listing the 40,000 documents would take ~4 MB; a differing document costs ~2 KB.
    assert!(bytes < 12 * 2500, "{bytes} bytes for 12 differences");
    // The same from the other side.
    let (found, _, _) = reconcile(&b, &a);
    assert_eq!(found, expected(&b, &a));
}

#[test]
fn an_empty_node_learns_everything_and_the_other_side_too() {
    let a = cluster(3000);
    let (found, rounds, _) = reconcile(&Heads::new(), &a);
    assert_eq!(found.len(), a.len());
    assert!(found.values().all(|s| *s == Side::Theirs));
    // Whole listings of 1024 documents once the ranges are small enough.
    assert!(rounds <= levels(a.len()) + 2, "{rounds} rounds");
    let (found, rounds, _) = reconcile(&a, &Heads::new());
    assert_eq!(found.len(), a.len());
    assert!(found.values().all(|s| *s == Side::Mine));
    assert_eq!(rounds, 1);
}

#[test]
fn separators_split_between_neighbours() {
    for (p, n) in [
        ("a", "b"),
        ("abc", "abd"),
        ("ab", "abc"),
        ("seg/x/1", "seg/y"),
        ("é", "ê"),
        ("a\u{7ff}", "a\u{800}"),
    ] {
        let s = separator(p, n);
        assert!(s.as_str() > p && s.as_str() <= n, "{p:?} {n:?} -> {s:?}");
        assert!(n.starts_with(&s));
    }
    assert_eq!(
        separator("seg/user00001/x", "seg/user00002/y"),
        "seg/user00002"
    );
}

fn whole(fp: [u8; 16], count: u64) -> ReconRange {
    ReconRange {
        lower: String::new(),
        upper: None,
        fp,
        count,
    }
}

#[test]
fn requests_out_of_bounds_are_refused() {
    let s = Summary::new(&cluster(10));
    let many = vec![whole([0; 16], 0); MAX_RECON_RANGES + 1];
    assert!(matches!(answer(&s, &many), Err(ReconError::BadRequest(_))));
    let empty = ReconRange {
        lower: "b".into(),
        upper: Some("a".into()),
        fp: [0; 16],
        count: 0,
    };
    assert!(matches!(
        answer(&s, &[empty]),
        Err(ReconError::BadRequest(_))
    ));
    let long = ReconRange {
        lower: "x".repeat(MAX_DOC_ID + 1),
        upper: None,
        fp: [0; 16],
        count: 0,
    };
    assert!(matches!(
        answer(&s, &[long]),
        Err(ReconError::BadRequest(_))
    ));
    // In bounds: answered.
    assert_eq!(answer(&s, &[whole([0; 16], 0)]).expect("ok").len(), 1);
}

#[test]
fn answers_that_do_not_fit_the_question_are_refused() {
    let s = Summary::new(&cluster(100));
    let r = whole([1; 16], 5);
    let cases: Vec<(&str, Vec<ReconAnswer>)> = vec![
        ("no answer", vec![]),
        ("two answers", vec![ReconAnswer::Same, ReconAnswer::Same]),
        (
            "too many items",
            vec![ReconAnswer::Items(
                (0..RECON_ITEMS + 1)
                    .map(|i| (format!("d{i:03}"), [0; 16]))
                    .collect(),
            )],
        ),
        (
            "items out of order",
            vec![ReconAnswer::Items(vec![
                ("b".into(), [0; 16]),
                ("a".into(), [0; 16]),
            ])],
        ),
        (
            "split in one part",
            vec![ReconAnswer::Split(vec![ReconPart {
                upper: None,
                fp: [0; 16],
                count: 1,
            }])],
        ),
        (
            "split bounds decreasing",
            vec![ReconAnswer::Split(vec![
                ReconPart {
                    upper: Some("m".into()),
                    fp: [0; 16],
                    count: 1,
                },
                ReconPart {
                    upper: Some("c".into()),
                    fp: [0; 16],
                    count: 1,
                },
                ReconPart {
                    upper: None,
                    fp: [0; 16],
                    count: 1,
                },
            ])],
        ),
        (
            "split not ending at the range's end",
            vec![ReconAnswer::Split(vec![
                ReconPart {
                    upper: Some("m".into()),
                    fp: [0; 16],
                    count: 1,
                },
                ReconPart {
                    upper: Some("z".into()),
                    fp: [0; 16],
                    count: 1,
                },
            ])],
        ),
    ];
    for (what, answers) in cases {
        let mut init = Initiator::new(&s);
        let _ = init.next_request().expect("first");
        let res = init.on_answer(std::slice::from_ref(&r), answers);
        assert!(
            matches!(res, Err(ReconError::BadAnswer(_))),
            "{what}: {res:?}"
        );
    }
}

#[test]
fn a_peer_that_never_narrows_is_given_up() {
    let s = Summary::new(&cluster(100));
    let mut init = Initiator::new(&s);
    let mut res = Ok(());
    let mut rounds = 0;
    loop {
        let ranges = match init.next_request() {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) => {
                res = Err(e);
                break;
            }
        };
        rounds += 1;
        // Always "split" each range into a sliver and the rest, with wrong fingerprints.
        let answers = ranges
            .iter()
            .map(|r| {
                let mid = format!("{}\u{1}", r.lower);
                ReconAnswer::Split(vec![
                    ReconPart {
                        upper: Some(mid),
                        fp: [0; 16],
                        count: 0,
                    },
                    ReconPart {
                        upper: r.upper.clone(),
                        fp: [7; 16],
                        count: 3,
                    },
                ])
            })
            .collect();
        init.on_answer(&ranges, answers).expect("well-formed");
    }
    assert_eq!(res, Err(ReconError::TooManyRounds));
    assert_eq!(rounds, MAX_ROUNDS);
}

fn heads_strategy() -> impl Strategy<Value = Vec<[u8; 32]>> {
    prop::collection::vec(any::<u8>().prop_map(|b| [b; 32]), 0..3)
}

#[derive(Clone, Debug)]
enum Edit {
    RemoveA(usize),
    RemoveB(usize),
    ChangeB(usize, u8),
    AddB(String),
}

fn edit_strategy() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<usize>().prop_map(Edit::RemoveA),
        any::<usize>().prop_map(Edit::RemoveB),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::ChangeB(i, b)),
        "[a-c]{1,2}/[a-z0-9]{1,10}".prop_map(Edit::AddB),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// For random pairs of summaries the comparison finds exactly the differing documents,
    /// on the right side, in O(log n) round trips and bytes that grow with the differences.
    #[test]
    fn reconciliation_finds_exactly_the_differences(
        base in prop::collection::btree_map("[a-c]{1,2}/[a-z0-9]{1,10}", heads_strategy(), 0..3000),
        edits in prop::collection::vec(edit_strategy(), 0..24),
    ) {
        let mut a = base.clone();
        let mut b = base;
        for e in edits {
            let key = |m: &Heads, i: usize| m.keys().nth(i % m.len().max(1)).cloned();
            match e {
                Edit::RemoveA(i) => { if let Some(k) = key(&a, i) { a.remove(&k); } }
                Edit::RemoveB(i) => { if let Some(k) = key(&b, i) { b.remove(&k); } }
                Edit::ChangeB(i, x) => {
                    if let Some(k) = key(&b, i) { b.insert(k, vec![[x; 32], [1; 32]]); }
                }
                Edit::AddB(k) => { b.insert(k, vec![[42; 32]]); }
            }
        }
        let want = expected(&a, &b);
        let (found, rounds, bytes) = reconcile(&a, &b);
        prop_assert_eq!(&found, &want);
        let d = want.len();
        let n = a.len().max(b.len());
        let l = levels(n);
        // Levels of the id space, plus extra requests only when more than
        // MAX_RECON_RANGES ranges differ at once.
        prop_assert!(rounds <= l + 2 + (16 * d * (l + 1)).div_ceil(MAX_RECON_RANGES),
            "{} rounds for n={} d={}", rounds, n, d);
        // One fingerprint of the whole space, then per difference and level a split
        // (16 parts of a bound and a fingerprint) and a listing of a small range.
        prop_assert!(bytes <= 64 + d * (l + 1) * 16 * 40,
            "{} bytes for n={} d={}", bytes, n, d);
        if d == 0 {
            prop_assert_eq!(rounds, 1);
        }
    }
}
