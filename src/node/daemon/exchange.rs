//! The node's exchanges with one peer: sync messages, blob fetches (in parts), the
//! (document, heads) summary comparison, and the peer list.

use super::*;

/// Sends one sync message in parts, each acknowledged before the next.
pub(super) async fn send_sync(net: &Client, peer: PeerId, doc: &str, msg: &[u8]) -> bool {
    let parts = protocol::parts(msg, protocol::sync_part_size());
    let n = parts.len() as u32;
    for (i, p) in parts.into_iter().enumerate() {
        let req = Request::Sync {
            doc: doc.to_string(),
            part: i as u32,
            parts: n,
            bytes: p.to_vec(),
        };
        match net.request(peer, req).await {
            Ok(Response::Ack) => {}
            Ok(Response::Rejected { why }) => {
                tracing::warn!(%peer, %doc, "peer refused a sync message: {why}");
                return false;
            }
            Ok(other) => {
                tracing::warn!(%peer, %doc, ?other, "unexpected answer to a sync message");
                return false;
            }
            Err(e) => {
                tracing::debug!(%peer, %doc, error = %e, "sync message not delivered");
                return false;
            }
        }
    }
    true
}

/// Answers a [`Request::Blobs`]: whole blobs in order while they fit in one frame.
pub(super) fn blobs_answer(r: &Replica, ids: &[[u8; 32]]) -> Result<Response, NodeError> {
    let mut found = Vec::new();
    let (mut big, mut absent) = (Vec::new(), Vec::new());
    let mut bytes = 0;
    for id in ids.iter().take(protocol::MAX_BLOB_IDS) {
        match r.blob(&BlobId(*id))? {
            None => absent.push(*id),
            Some(b) if b.len() > CHUNK => big.push(*id),
            Some(b) => {
                if bytes + b.len() > CHUNK && !found.is_empty() {
                    break;
                }
                bytes += b.len();
                found.push(BlobBytes { id: *id, bytes: b });
            }
        }
    }
    Ok(Response::Blobs { found, big, absent })
}

/// Fetches blobs from `peer` (many per request; a blob larger than a frame in parts),
/// stores them, and delivers the changes that waited for them after every batch.
pub(super) async fn fetch_blobs(
    net: &Client,
    replica: &ReplicaHandle,
    counters: &super::Counters,
    peer: PeerId,
    ids: &[BlobId],
    max: u64,
) -> Result<(), DaemonError> {
    let mut rest: Vec<BlobId> = ids.to_vec();
    while !rest.is_empty() {
        let ask: Vec<[u8; 32]> = rest
            .iter()
            .take(protocol::MAX_BLOB_IDS)
            .map(|b| b.0)
            .collect();
        let (found, big, absent) = match net.request(peer, Request::Blobs { ids: ask }).await? {
            Response::Blobs { found, big, absent } => (found, big, absent),
            other => {
                return Err(NetError::Request {
                    peer,
                    why: format!("unexpected answer {other:?}"),
                }
                .into())
            }
        };
        let mut answered: HashSet<[u8; 32]> = absent.iter().copied().collect();
        for id in &big {
            answered.insert(*id);
            let id = BlobId(*id);
            if let Some(bytes) = fetch_blob(net, peer, &id, max).await? {
                found_store(replica, counters, peer, vec![BlobBytes { id: id.0, bytes }]).await?;
            }
        }
        answered.extend(found.iter().map(|b| b.id));
        if answered.is_empty() {
            break;
        }
        let n = found.len();
        found_store(replica, counters, peer, found).await?;
        rest.retain(|b| !answered.contains(&b.0));
        tracing::debug!(%peer, blobs = n, left = rest.len(), "blobs fetched");
    }
    // One delivery at the end: each pass decodes every waiting change of the mailbox.
    replica.call(|r| r.deliver_all(now())).await??;
    tracing::debug!(%peer, blobs = ids.len(), "blobs delivered");
    Ok(())
}

pub(super) async fn found_store(
    replica: &ReplicaHandle,
    counters: &super::Counters,
    peer: PeerId,
    found: Vec<BlobBytes>,
) -> Result<(), DaemonError> {
    use std::sync::atomic::Ordering::Relaxed;
    counters.blobs.fetch_add(found.len() as u64, Relaxed);
    counters
        .bytes
        .fetch_add(found.iter().map(|b| b.bytes.len() as u64).sum(), Relaxed);
    let bad = replica
        .call(move |r| -> Result<usize, NodeError> {
            let mut bad = 0;
            for b in found {
                if !r.put_blob(&BlobId(b.id), &b.bytes)? {
                    bad += 1;
                }
            }
            Ok(bad)
        })
        .await??;
    if bad > 0 {
        tracing::warn!(%peer, blobs = bad, "peer sent blobs that do not match their ids");
    }
    Ok(())
}

pub(super) async fn fetch_blob(
    net: &Client,
    peer: PeerId,
    id: &BlobId,
    max: u64,
) -> Result<Option<Vec<u8>>, NetError> {
    let mut buf = Vec::new();
    loop {
        let req = Request::Blob {
            id: id.0,
            offset: buf.len() as u64,
        };
        match net.request(peer, req).await? {
            Response::Blob { total, bytes } => {
                if total > max || bytes.is_empty() && (buf.len() as u64) < total {
                    return Err(NetError::Request {
                        peer,
                        why: format!("bad blob answer ({total} bytes)"),
                    });
                }
                buf.extend_from_slice(&bytes);
                if buf.len() as u64 >= total {
                    return Ok(Some(buf));
                }
            }
            Response::NoBlob => return Ok(None),
            other => {
                return Err(NetError::Request {
                    peer,
                    why: format!("unexpected answer {other:?}"),
                })
            }
        }
    }
}

type Compared = (Vec<String>, BTreeSet<String>);

/// The documents whose heads differ between this node and `peer`, and the accounts the
/// peer replicates. One round trip when the summaries are equal.
pub(super) async fn compare(
    net: &Client,
    peer: PeerId,
    mine: &BTreeMap<String, Vec<[u8; 32]>>,
) -> Result<Compared, NetError> {
    let hash = summary_hash(mine);
    let same = net
        .request(
            peer,
            Request::Summary {
                hash,
                docs: mine.len() as u64,
            },
        )
        .await?;
    let mut accounts = BTreeSet::new();
    if same == (Response::Summary { same: true }) {
        for d in mine.keys() {
            if let Some(a) = doc_account(d) {
                accounts.insert(a.to_string());
            }
        }
        return Ok((Vec::new(), accounts));
    }
    let mut theirs: BTreeMap<String, Vec<[u8; 32]>> = BTreeMap::new();
    let mut after = None;
    loop {
        match net
            .request(
                peer,
                Request::List {
                    after: after.clone(),
                },
            )
            .await?
        {
            Response::List { entries, more } => {
                let last = entries.last().map(|e| e.0.clone());
                for (d, mut h) in entries {
                    h.sort();
                    theirs.insert(d, h);
                }
                if !more || last.is_none() || last == after {
                    break;
                }
                after = last;
            }
            other => {
                return Err(NetError::Request {
                    peer,
                    why: format!("unexpected answer {other:?}"),
                })
            }
        }
    }
    for d in theirs.keys() {
        if let Some(a) = doc_account(d) {
            accounts.insert(a.to_string());
        }
    }
    let mut docs = Vec::new();
    for (d, h) in &theirs {
        if mine.get(d) != Some(h) {
            docs.push(d.clone());
        }
    }
    for d in mine.keys() {
        if !theirs.contains_key(d) {
            docs.push(d.clone());
        }
    }
    Ok((docs, accounts))
}

/// Connected peers, for `status`.
pub async fn peers(net: &Client) -> Vec<PeerInfo> {
    net.peers().await
}
