//! A hostile peer speaking the protocol: sync messages about documents of accounts the node
//! does not replicate, malformed document ids, undecodable sync messages, oversized and
//! out-of-order parts. Each is refused, the node keeps serving, and nothing it stores
//! changes.

mod cluster_support;

use cluster_support::{ok, Cluster};
use dovetail::net::protocol::{
    BlobBytes, ReconAnswer, ReconRange, Request, Response, CHUNK, MAX_ATTACHED_BYTES, MAX_DOC_ID,
    MAX_RECON_RANGES,
};
use dovetail::net::{self, Event, NetConfig};
use std::time::Duration;

#[test]
fn hostile_requests_are_refused_and_change_nothing() {
    let mut c = Cluster::new(1);
    c.append(0, "mine", 3);
    c.start(0, &[]);
    let addr = c.nodes[0].addr.clone().expect("addr");
    let status = |c: &Cluster| ok(&["--data-dir", c.dir(0), "status", "--account", "alice"]);
    let before = status(&c);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let me = rt.block_on(async {
        let key = libp2p::identity::Keypair::generate_ed25519();
        let me = key.public().to_peer_id();
        let (client, mut events, event_loop) = net::start(
            &key.to_protobuf_encoding().expect("key"),
            NetConfig {
                bootstrap: vec![addr.parse().expect("multiaddr")],
                ..NetConfig::default()
            },
        )
        .expect("start");
        tokio::spawn(event_loop.run());
        let peer = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match events.recv().await {
                    Some(Event::Connected { peer, .. }) => return peer,
                    Some(_) => {}
                    None => panic!("event loop stopped"),
                }
            }
        })
        .await
        .expect("connected");
        let seg = format!("seg/mallory/{}/{}/0", "ab".repeat(16), "cd".repeat(32));
        let cases = vec![
            ("unknown account", seg, 0, 1, vec![1, 2, 3], vec![]),
            (
                "malformed id",
                "acct/../../etc".to_string(),
                0,
                1,
                vec![0],
                vec![],
            ),
            (
                "undecodable message",
                "acct/alice".to_string(),
                0,
                1,
                vec![0x42; 64],
                vec![],
            ),
            (
                "oversized part",
                "acct/alice".to_string(),
                0,
                2,
                vec![0; CHUNK + 1],
                vec![],
            ),
            (
                "part out of order",
                "acct/alice".to_string(),
                3,
                5,
                vec![0; 10],
                vec![],
            ),
            (
                "blobs on a part that is not the last",
                "acct/alice".to_string(),
                0,
                2,
                vec![0; 10],
                vec![BlobBytes {
                    id: [3; 32],
                    bytes: vec![1; 10],
                }],
            ),
            (
                "too many blob bytes",
                "acct/alice".to_string(),
                0,
                1,
                vec![0; 10],
                (0..3)
                    .map(|i| BlobBytes {
                        id: [i; 32],
                        bytes: vec![i; MAX_ATTACHED_BYTES / 2],
                    })
                    .collect(),
            ),
        ];
        for (what, doc, part, parts, bytes, blobs) in cases {
            let r = client
                .request(
                    peer,
                    Request::Sync {
                        doc,
                        part,
                        parts,
                        bytes,
                        blobs,
                    },
                )
                .await;
            assert!(
                matches!(r, Ok(Response::Rejected { .. })),
                "{what}: not refused: {r:?}"
            );
        }
        // A blob nobody has, and the node still answers summary requests.
        let r = client
            .request(
                peer,
                Request::Blob {
                    id: [7; 32],
                    offset: 0,
                },
            )
            .await;
        assert!(matches!(r, Ok(Response::NoBlob)), "{r:?}");
        // Reconciliation: the whole id space from a peer with nothing lists the documents.
        let whole = ReconRange {
            lower: String::new(),
            upper: None,
            fp: [0; 16],
            count: 0,
        };
        let r = client
            .request(
                peer,
                Request::Recon {
                    ranges: vec![whole.clone()],
                },
            )
            .await;
        match r {
            Ok(Response::Recon { answers }) => match answers.as_slice() {
                [ReconAnswer::Items(items)] => {
                    assert!(items.iter().any(|e| e.0 == "acct/alice"));
                    assert!(!items.iter().any(|e| e.0.contains("mallory")));
                }
                other => panic!("recon answers: {other:?}"),
            },
            other => panic!("recon: {other:?}"),
        }
        // Out of bounds: too many ranges, an empty range, a bound too long.
        let bad = [
            vec![whole.clone(); MAX_RECON_RANGES + 1],
            vec![ReconRange {
                lower: "b".into(),
                upper: Some("a".into()),
                ..whole.clone()
            }],
            vec![ReconRange {
                lower: "x".repeat(MAX_DOC_ID + 1),
                ..whole.clone()
            }],
        ];
        for ranges in bad {
            let r = client.request(peer, Request::Recon { ranges }).await;
            assert!(
                matches!(r, Ok(Response::Rejected { .. })),
                "bad reconciliation request not refused: {r:?}"
            );
        }
        // A peer that keeps sending refused messages is disconnected.
        for _ in 0..20 {
            let _ = client
                .request(
                    peer,
                    Request::Sync {
                        doc: "nonsense".into(),
                        part: 0,
                        parts: 1,
                        bytes: vec![],
                        blobs: vec![],
                    },
                )
                .await;
        }
        let dropped = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match events.recv().await {
                    Some(Event::Disconnected { peer: p }) if p == peer => return true,
                    Some(_) => {}
                    None => return false,
                }
            }
        })
        .await;
        assert_eq!(dropped, Ok(true), "the node kept a peer sending garbage");
        client.shutdown();
        me
    });
    assert_eq!(status(&c), before, "the refused requests changed the node");
    let refusals = c.log_lines(0, "rejected");
    assert!(
        refusals.len() >= 5 && refusals.iter().all(|l| l.contains(&me.to_string())),
        "refusals are logged with the peer: {refusals:?}"
    );
    assert!(refusals.iter().any(|l| l.contains("unknown account")));
    assert!(!c.log_lines(0, "disconnecting a peer").is_empty());
    let accounts = ok(&["--data-dir", c.dir(0), "account", "list"]);
    assert_eq!(accounts.trim(), "alice");
}
