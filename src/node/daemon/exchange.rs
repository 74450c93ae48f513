//! The node's exchanges with one peer: sync messages, blob fetches (in parts), the
//! (document, heads) summary comparison, and the peer list.

use super::*;

/// Sends one sync message in parts, each acknowledged before the next; `blobs` go with the
/// last part.
pub(super) async fn send_sync(
    net: &Client,
    peer: PeerId,
    doc: &str,
    msg: &[u8],
    blobs: Vec<(BlobId, Vec<u8>)>,
) -> bool {
    let parts = protocol::parts(msg, protocol::sync_part_size());
    let n = parts.len() as u32;
    let mut blobs = Some(blobs);
    for (i, p) in parts.into_iter().enumerate() {
        let last = i + 1 == n as usize;
        let req = Request::Sync {
            doc: doc.to_string(),
            part: i as u32,
            parts: n,
            bytes: p.to_vec(),
            blobs: match blobs.take_if(|_| last) {
                Some(b) => b
                    .into_iter()
                    .map(|(id, bytes)| BlobBytes { id: id.0, bytes })
                    .collect(),
                None => Vec::new(),
            },
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
    let bytes: u64 = found.iter().map(|b| b.bytes.len() as u64).sum();
    counters.metrics.blob_bytes_fetched.inc_by(bytes);
    counters
        .bytes
        .fetch_add(found.iter().map(|b| b.bytes.len() as u64).sum(), Relaxed);
    let bad = replica
        .call(move |r| -> Result<usize, NodeError> {
            let blobs: Vec<(BlobId, &[u8])> = found
                .iter()
                .map(|b| (BlobId(b.id), b.bytes.as_slice()))
                .collect();
            Ok(r.put_blobs(&blobs)?.iter().filter(|ok| !**ok).count())
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

impl Core {
    /// This node's summary for reconciliation, rebuilt only when the heads changed.
    pub(super) async fn summary(&mut self) -> Result<Arc<Summary>, DaemonError> {
        if self.dirty {
            self.refresh().await?;
        }
        if let Some(s) = &self.summary {
            return Ok(s.clone());
        }
        let s = Arc::new(Summary::new(&self.heads));
        self.summary = Some(s.clone());
        Ok(s)
    }
}

/// The documents whose heads differ between this node and `peer` (both directions), and
/// the accounts the peer replicates, by range-based reconciliation ([`recon`]): one round
/// trip when the summaries are equal, about `log16(documents)` when few documents differ.
pub(super) async fn compare(
    net: &Client,
    peer: PeerId,
    mine: &Summary,
) -> Result<Compared, NetError> {
    let bad = |why: String| NetError::Request { peer, why };
    let mut init = recon::Initiator::new(mine);
    while let Some(ranges) = init.next_request().map_err(|e| bad(e.to_string()))? {
        let req = Request::Recon {
            ranges: ranges.clone(),
        };
        match net.request(peer, req).await? {
            Response::Recon { answers } => init
                .on_answer(&ranges, answers)
                .map_err(|e| bad(e.to_string()))?,
            other => return Err(bad(format!("unexpected answer {other:?}"))),
        }
    }
    let rounds = init.rounds();
    let found = init.finish();
    // The peer's documents are mine, minus those only I have, plus those only it has: so
    // are its accounts.
    let mut per_account: BTreeMap<&str, i64> = BTreeMap::new();
    for d in mine.docs() {
        if let Some(a) = doc_account(d) {
            *per_account.entry(a).or_default() += 1;
        }
    }
    for (d, side) in &found {
        if let Some(a) = doc_account(d) {
            match side {
                recon::Side::Mine => *per_account.entry(a).or_default() -= 1,
                recon::Side::Theirs => *per_account.entry(a).or_default() += 1,
                recon::Side::Both => {}
            }
        }
    }
    let accounts = per_account
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(a, _)| a.to_string())
        .collect();
    tracing::debug!(%peer, rounds, differ = found.len(), "summaries compared");
    Ok((found.into_keys().collect(), accounts))
}

/// Connected peers, for `status`.
pub async fn peers(net: &Client) -> Vec<PeerInfo> {
    net.peers().await
}
