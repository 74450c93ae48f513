//! Changes crafted by hand, as a newer version, a buggy peer or a hostile one could send
//! them, fed to a replica through the real sync protocol (issue 5 §2, §3, §6):
//!
//! - entries of an unknown kind are skipped one by one, the known ones (claims) still apply;
//! - a malformed change is skipped, and the view ends the same whatever order changes of
//!   several documents arrive in;
//! - flag changes made while remote changes wait are decided by what the node showed;
//! - the renumbering grace period runs per homeless message;
//! - a mailbox whose UID space is exhausted fails alone.

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, AutoCommit, ROOT};
use dovetail::crdt::meta::{ChangeMeta, VClock};
use dovetail::model::{AccountName, BlobId, Guid, MailboxName, NodeId, UidSet};
use dovetail::node::{FlagOp, Options, Replica};
use dovetail::store::MemKv;
use dovetail::sync::DocSession;
use std::sync::Arc;

fn alice() -> AccountName {
    AccountName::try_from("alice").expect("account")
}

fn replica(seed: u8) -> Replica {
    let opts = Options {
        renumber_grace_secs: 30,
        ..Options::default()
    };
    let mut r = Replica::with_kv(Arc::new(MemKv::new()), Some([seed; 32]), opts).expect("replica");
    r.create_account(&alice()).expect("account");
    r
}

/// A peer that writes segment documents by hand.
struct Peer {
    id: NodeId,
    lamport: u64,
    seq: u64,
}

/// One crafted change: its document and its bytes, kept to replay in any order.
struct Crafted {
    doc: String,
    doc_state: AutoCommit,
}

impl Peer {
    fn new(b: u8) -> Peer {
        Peer {
            id: NodeId([b; 32]),
            lamport: 0,
            seq: 0,
        }
    }

    /// The id of this peer's segment document `gen` of mailbox `mb` (hex id).
    fn doc_id(&self, mb: &str, gen: u32) -> String {
        format!("seg/alice/{mb}/{}/{gen}", self.id)
    }

    /// Makes one change in `doc` with `ops` (key, Some(value) to put / None to delete),
    /// depending on `deps` (other writers' mailbox clock entries).
    fn change(
        &mut self,
        doc: &mut AutoCommit,
        ops: &[(String, Option<automerge::ScalarValue>)],
        deps: &[(NodeId, u64)],
        blobs: &[BlobId],
    ) {
        self.seq += 1;
        self.lamport += 1;
        let mut clock: VClock = deps.iter().copied().collect();
        clock.insert(self.id, self.seq);
        for (_, c) in deps {
            self.lamport = self.lamport.max(*c + 1);
        }
        let meta = ChangeMeta {
            node: self.id,
            clock,
            lamport: self.lamport,
            blobs: blobs.to_vec(),
        };
        doc.set_actor(ActorId::from(self.id.as_bytes().as_slice()));
        for (k, v) in ops {
            match v {
                Some(v) => doc.put(ROOT, k.as_str(), v.clone()).expect("put"),
                None => doc.delete(ROOT, k.as_str()).expect("delete"),
            }
        }
        doc.commit_with(CommitOptions::default().with_message(meta.encode()));
    }
}

/// Syncs a crafted document into `r` until both sides are quiet.
fn send(r: &mut Replica, from: &Peer, c: &Crafted) {
    r.end_sessions(&from.id);
    let mut doc = c.doc_state.clone();
    let mut session = DocSession::new();
    for _ in 0..32 {
        let mut quiet = true;
        if let Some(m) = session.generate(&mut doc) {
            quiet = false;
            r.sync_receive(&from.id, &c.doc, &m, 1_000)
                .expect("receive");
        }
        if let Some(m) = r.sync_generate(&from.id, &c.doc).expect("generate") {
            quiet = false;
            session.receive(&mut doc, &m).expect("peer receive");
        }
        if quiet {
            return;
        }
    }
    panic!("sync of {} did not settle", c.doc);
}

fn body(n: u32) -> Vec<u8> {
    format!("Subject: crafted {n}\r\n\r\nbody {n}\r\n").into_bytes()
}

fn msg_value(b: &[u8]) -> automerge::ScalarValue {
    format!("{} {} 0", BlobId::of(b), b.len()).into()
}

fn yes() -> Option<automerge::ScalarValue> {
    Some(true.into())
}

fn inbox_id(r: &mut Replica) -> String {
    r.status(&alice()).expect("status")[0].id.clone()
}

fn list(r: &mut Replica, name: &str) -> Vec<(u32, Guid, Vec<String>)> {
    r.list(&alice(), &MailboxName::try_from(name).expect("name"))
        .expect("list")
        .into_iter()
        .map(|(u, row)| {
            (
                u.get(),
                row.guid,
                row.flags.iter().map(|f| f.as_str().to_string()).collect(),
            )
        })
        .collect()
}

#[test]
fn unknown_entry_kinds_are_skipped_and_claims_kept() {
    let mut r = replica(1);
    let mb = inbox_id(&mut r);
    let mut p = Peer::new(0xa1);
    let g = Guid([7; 16]);
    let b = body(1);
    let mut doc = AutoCommit::new();
    p.change(
        &mut doc,
        &[
            (format!("m/{g}"), Some(msg_value(&b))),
            (format!("c/{g}/1"), Some(1u64.into())),
            // A newer version's entries, before and after the claim.
            (format!("z/{g}/future"), Some("x".into())),
            (format!("y/{g}"), Some(3u64.into())),
            (format!("t/{g}/1.{}/\\Seen", &p.id.to_hex()[..16]), yes()),
        ],
        &[],
        &[BlobId::of(&b)],
    );
    r.put_blob(&BlobId::of(&b), &b).expect("blob");
    send(
        &mut r,
        &p,
        &Crafted {
            doc: p.doc_id(&mb, 0),
            doc_state: doc,
        },
    );
    assert_eq!(list(&mut r, "INBOX"), vec![(1, g, vec!["\\Seen".into()])]);
}

/// Two documents of two peers; peer Q's second change depends on P's malformed one. Two
/// replicas receive the documents in opposite orders and must show the same thing.
#[test]
fn a_malformed_change_is_skipped_alike_in_every_order() {
    let mut r1 = replica(1);
    let mut r2 = replica(2);
    let mb = inbox_id(&mut r1);
    assert_eq!(mb, inbox_id(&mut r2));
    let (mut p, mut q) = (Peer::new(0xa1), Peer::new(0xb2));
    let (g, h) = (Guid([1; 16]), Guid([2; 16]));
    let (bg, bh) = (body(1), body(2));
    let mut dp = AutoCommit::new();
    let mut dq = AutoCommit::new();
    // P adds g at UID 1, flagged.
    p.change(
        &mut dp,
        &[
            (format!("m/{g}"), Some(msg_value(&bg))),
            (format!("c/{g}/1"), Some(1u64.into())),
            (format!("t/{g}/1.{}/\\Flagged", &p.id.to_hex()[..16]), yes()),
        ],
        &[],
        &[BlobId::of(&bg)],
    );
    // P's second change is malformed (a claim of UID "zero") but also removes the flag and
    // sets another: all of it must be ignored, everywhere.
    p.change(
        &mut dp,
        &[
            (format!("c/{g}/0"), Some(2u64.into())),
            (format!("t/{g}/1.{}/\\Flagged", &p.id.to_hex()[..16]), None),
            (format!("t/{g}/2.{}/$Bad", &p.id.to_hex()[..16]), yes()),
        ],
        &[],
        &[],
    );
    // Q saw both and adds h at UID 2, and sets \Seen on g (in its own document).
    q.change(
        &mut dq,
        &[
            (format!("m/{h}"), Some(msg_value(&bh))),
            (format!("c/{h}/2"), Some(3u64.into())),
        ],
        &[(p.id, 2)],
        &[BlobId::of(&bh)],
    );
    let cp = Crafted {
        doc: p.doc_id(&mb, 0),
        doc_state: dp,
    };
    let cq = Crafted {
        doc: q.doc_id(&mb, 0),
        doc_state: dq,
    };
    for r in [&mut r1, &mut r2] {
        r.put_blob(&BlobId::of(&bg), &bg).expect("blob");
        r.put_blob(&BlobId::of(&bh), &bh).expect("blob");
    }
    send(&mut r1, &p, &cp);
    send(&mut r1, &q, &cq);
    send(&mut r2, &q, &cq);
    assert_eq!(list(&mut r2, "INBOX"), vec![], "Q's change waits for P's");
    send(&mut r2, &p, &cp);
    let want = vec![
        (1, g, vec!["\\Flagged".to_string()]),
        (2, h, Vec::<String>::new()),
    ];
    assert_eq!(list(&mut r1, "INBOX"), want);
    assert_eq!(list(&mut r2, "INBOX"), want);
    assert_eq!(
        r1.status(&alice()).expect("s1"),
        r2.status(&alice()).expect("s2")
    );
}

/// A `-FLAGS` removes only the adds the node showed; a `+FLAGS` is an add of its own even
/// when a remote add of the same flag waits unapplied in the document (issue 5 §2).
#[test]
fn flag_changes_while_remote_changes_wait_follow_what_was_shown() {
    let mut r = replica(1);
    let mb = inbox_id(&mut r);
    let (mut p, mut q) = (Peer::new(0xa1), Peer::new(0xb2));
    let g = Guid([9; 16]);
    let b = body(9);
    r.put_blob(&BlobId::of(&b), &b).expect("blob");
    let mut dp = AutoCommit::new();
    p.change(
        &mut dp,
        &[
            (format!("m/{g}"), Some(msg_value(&b))),
            (format!("c/{g}/1"), Some(1u64.into())),
        ],
        &[],
        &[BlobId::of(&b)],
    );
    let cp = Crafted {
        doc: p.doc_id(&mb, 0),
        doc_state: dp.fork(),
    };
    send(&mut r, &p, &cp);
    assert_eq!(list(&mut r, "INBOX"), vec![(1, g, vec![])]);
    // Q's first change (that R never gets until the end) and P's adds of \Seen and $Work
    // that depend on it: stored in R's document for P, but waiting.
    let mut dq = AutoCommit::new();
    q.change(&mut dq, &[("z/ignored".into(), yes())], &[(p.id, 1)], &[]);
    let tag = |l: u64, n: &Peer| format!("{l}.{}", &n.id.to_hex()[..16]);
    let t_seen = tag(3, &p);
    p.lamport = 2;
    p.change(
        &mut dp,
        &[
            (format!("t/{g}/{t_seen}/\\Seen"), yes()),
            (format!("t/{g}/{t_seen}/$Work"), yes()),
        ],
        &[(q.id, 1)],
        &[],
    );
    // ...and P then removes its own \Seen add (P had seen it).
    p.change(
        &mut dp,
        &[(format!("t/{g}/{t_seen}/\\Seen"), None)],
        &[(q.id, 1)],
        &[],
    );
    send(
        &mut r,
        &p,
        &Crafted {
            doc: p.doc_id(&mb, 0),
            doc_state: dp,
        },
    );
    assert_eq!(
        list(&mut r, "INBOX"),
        vec![(1, g, vec![])],
        "P's changes wait for Q's"
    );
    let inbox = MailboxName::inbox();
    let one = UidSet::try_from("1").expect("set");
    // The user of R sees no flags. `-$Work` removes nothing it did not see; `+\Seen` is an
    // add concurrent with P's remove of its own add: it must survive.
    r.store_flags(
        &alice(),
        &inbox,
        &one,
        &FlagOp::try_from("-$Work").expect("op"),
        1_000,
    )
    .expect("remove");
    r.store_flags(
        &alice(),
        &inbox,
        &one,
        &FlagOp::try_from("+\\Seen").expect("op"),
        1_000,
    )
    .expect("add");
    assert_eq!(list(&mut r, "INBOX"), vec![(1, g, vec!["\\Seen".into()])]);
    send(
        &mut r,
        &q,
        &Crafted {
            doc: q.doc_id(&mb, 0),
            doc_state: dq,
        },
    );
    r.deliver_all(1_000).expect("deliver");
    assert_eq!(
        list(&mut r, "INBOX"),
        vec![(1, g, vec!["$Work".into(), "\\Seen".into()])],
        "P's $Work add survives R's -$Work (unseen); R's +\\Seen survives P's remove"
    );
}

/// Two peers claim the same UIDs for different messages: INBOX at the very top of the
/// 32-bit space, `Work` at UID 1. INBOX cannot be renumbered; Work still is.
#[test]
fn an_exhausted_mailbox_fails_alone() {
    let mut r = replica(1);
    r.create_mailbox(&alice(), &MailboxName::try_from("Work").expect("name"))
        .expect("create");
    let st = r.status(&alice()).expect("status");
    let id = |n: &str| st.iter().find(|s| s.name == n).expect("mailbox").id.clone();
    let (inbox, work) = (id("INBOX"), id("Work"));
    let (mut p, mut q) = (Peer::new(0xa1), Peer::new(0xb2));
    let mut n = 0;
    for (who, mb, uid) in [
        (0, &inbox, u32::MAX),
        (1, &inbox, u32::MAX),
        (0, &work, 1),
        (1, &work, 1),
    ] {
        let peer = if who == 0 { &mut p } else { &mut q };
        n += 1;
        let b = body(n);
        r.put_blob(&BlobId::of(&b), &b).expect("blob");
        let g = Guid([n as u8; 16]);
        let mut d = AutoCommit::new();
        peer.seq = 0;
        peer.change(
            &mut d,
            &[
                (format!("m/{g}"), Some(msg_value(&b))),
                (format!("c/{g}/{uid}"), Some(1u64.into())),
            ],
            &[],
            &[BlobId::of(&b)],
        );
        let c = Crafted {
            doc: peer.doc_id(mb, 0),
            doc_state: d,
        };
        send(&mut r, peer, &c);
    }
    assert_eq!(list(&mut r, "INBOX"), vec![]);
    assert_eq!(list(&mut r, "Work"), vec![]);
    let renumbered = r.renumber_after(2_000, 0).expect("renumbering goes on");
    assert_eq!(renumbered, 2);
    assert_eq!(list(&mut r, "INBOX"), vec![], "nothing above 2^32-1");
    let work: Vec<u32> = list(&mut r, "Work").iter().map(|x| x.0).collect();
    assert_eq!(work, vec![2, 3]);
}

/// The grace period runs per homeless message: a clash at t=1000 is renumbered by a node
/// that made neither claim at t=1030, but a clash that happened at t=1020 waits until
/// t=1050.
#[test]
fn the_grace_period_runs_per_homeless_message() {
    let mut r = replica(1);
    let mb = inbox_id(&mut r);
    let (mut p, mut q) = (Peer::new(0xa1), Peer::new(0xb2));
    let (mut dp, mut dq) = (AutoCommit::new(), AutoCommit::new());
    let mut guids = Vec::new();
    for (round, uid, now) in [(0u8, 1u32, 1_000i64), (1, 2, 1_020)] {
        for (i, (peer, d)) in [(&mut p, &mut dp), (&mut q, &mut dq)]
            .into_iter()
            .enumerate()
        {
            let g = Guid([10 + 2 * round + i as u8; 16]);
            guids.push(g);
            let b = body(100 + u32::from(round) * 2 + i as u32);
            r.put_blob(&BlobId::of(&b), &b).expect("blob");
            let deps: Vec<(NodeId, u64)> = vec![];
            peer.change(
                d,
                &[
                    (format!("m/{g}"), Some(msg_value(&b))),
                    (format!("c/{g}/{uid}"), Some(1u64.into())),
                ],
                &deps,
                &[BlobId::of(&b)],
            );
        }
        // Deliver both documents at `now`.
        for (peer, d) in [(&p, &dp), (&q, &dq)] {
            let mut doc = (*d).clone();
            let id = peer.doc_id(&mb, 0);
            let mut session = DocSession::new();
            for _ in 0..16 {
                let mut quiet = true;
                if let Some(m) = session.generate(&mut doc) {
                    quiet = false;
                    r.sync_receive(&peer.id, &id, &m, now).expect("receive");
                }
                if let Some(m) = r.sync_generate(&peer.id, &id).expect("gen") {
                    quiet = false;
                    session.receive(&mut doc, &m).expect("recv");
                }
                if quiet {
                    break;
                }
            }
        }
        r.end_sessions(&p.id);
        r.end_sessions(&q.id);
    }
    assert_eq!(list(&mut r, "INBOX"), vec![]);
    assert_eq!(
        r.renumber_due(1_025).expect("renumber"),
        0,
        "nobody is due yet"
    );
    assert_eq!(
        r.renumber_due(1_030).expect("renumber"),
        2,
        "the first clash only"
    );
    let shown: Vec<Guid> = list(&mut r, "INBOX").iter().map(|x| x.1).collect();
    assert_eq!(shown.len(), 2);
    assert!(shown.iter().all(|g| guids[..2].contains(g)), "{shown:?}");
    assert_eq!(r.renumber_due(1_049).expect("renumber"), 0);
    assert_eq!(r.renumber_due(1_050).expect("renumber"), 2);
    assert_eq!(list(&mut r, "INBOX").len(), 4);
}

/// A body that only a waiting change names (its causal dependency has not arrived) survives
/// a garbage collection; the body of an expunged message does not.
#[test]
fn gc_keeps_the_bodies_of_waiting_changes() {
    let mut r = replica(1);
    let mb = inbox_id(&mut r);
    let (mut p, mut q) = (Peer::new(0xa1), Peer::new(0xb2));
    let g = Guid([5; 16]);
    let b = body(5);
    let mut dq = AutoCommit::new();
    q.change(&mut dq, &[("z/ignored".into(), yes())], &[], &[]);
    let mut dp = AutoCommit::new();
    p.change(
        &mut dp,
        &[
            (format!("m/{g}"), Some(msg_value(&b))),
            (format!("c/{g}/1"), Some(1u64.into())),
        ],
        &[(q.id, 1)],
        &[BlobId::of(&b)],
    );
    send(
        &mut r,
        &p,
        &Crafted {
            doc: p.doc_id(&mb, 0),
            doc_state: dp,
        },
    );
    r.put_blob(&BlobId::of(&b), &b).expect("blob");
    // A local message, expunged: its body goes.
    let local = b"Subject: local\r\n\r\ngone soon\r\n".to_vec();
    let inbox = MailboxName::inbox();
    r.append(
        &alice(),
        &inbox,
        vec![dovetail::node::NewMessage {
            name: "local".into(),
            bytes: local.clone(),
            flags: Default::default(),
            internal_date: 0,
        }],
        1_000,
    )
    .expect("append");
    r.expunge(
        &alice(),
        &inbox,
        &UidSet::try_from("1:*").expect("set"),
        1_000,
    )
    .expect("expunge");
    let st = r.gc().expect("gc");
    assert_eq!((st.kept, st.dropped), (1, 1), "{st:?}");
    assert!(r.blob(&BlobId::of(&local)).expect("read").is_none());
    send(
        &mut r,
        &q,
        &Crafted {
            doc: q.doc_id(&mb, 0),
            doc_state: dq,
        },
    );
    r.deliver_all(1_000).expect("deliver");
    // P's claim of UID 1 met the expunged local message's: renumbered above it.
    assert_eq!(r.renumber_after(1_000, 0).expect("renumber"), 1);
    let rows = list(&mut r, "INBOX");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].0, rows[0].1), (2, g));
    assert_eq!(r.blob(&BlobId::of(&b)).expect("read"), Some(b));
}
