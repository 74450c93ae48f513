//! The request-response protocol between nodes: length-prefixed postcard frames with an
//! explicit size limit, so a hostile peer cannot make a node allocate more than
//! [`MAX_FRAME`] bytes for one frame. Anything larger (a sync message carrying a renumbering
//! of tens of thousands of UIDs, a 64 MiB message body) crosses in parts.

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use serde::{Deserialize, Serialize};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// The protocol name negotiated on every request stream.
/// `/2`: a sync message carries the blobs its changes name ([`Request::Sync`]'s `blobs`).
/// `/3`: segment changes are packed records (`crdt::bulk`), which a `/2` node would skip.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/dovetail/sync/3");

/// The largest frame read from a peer. A frame announcing more is refused before anything
/// is allocated for it.
pub const MAX_FRAME: usize = 8 * 1024 * 1024;

/// Bytes of a sync message or blob carried by one frame (well under [`MAX_FRAME`]).
pub const CHUNK: usize = 4 * 1024 * 1024;

/// Bytes of blobs sent along with a sync message at most (on its last part).
pub const MAX_ATTACHED_BYTES: usize = 1024 * 1024;

/// Blobs sent along with a sync message at most.
pub const MAX_ATTACHED_BLOBS: usize = 256;

/// Blob ids per [`Request::Blobs`].
pub const MAX_BLOB_IDS: usize = 4096;

/// Ranges per [`Request::Recon`].
pub const MAX_RECON_RANGES: usize = 256;

/// Sub-ranges a differing range is split into.
pub const RECON_FANOUT: usize = 16;

/// A differing range with at most this many documents is listed, not split.
pub const RECON_ITEMS: usize = 16;

/// Documents listed at once for a range the asker has nothing in (nothing to compare).
pub const RECON_LIST: usize = 1024;

/// The longest document id (or range bound) accepted in a reconciliation message.
pub const MAX_DOC_ID: usize = 512;

/// The fingerprint of a set of (document, heads) items: XOR of 16-byte item hashes.
pub type Fingerprint = [u8; 16];

/// One range of the document-id space, `[lower, upper)` (`upper` `None`: unbounded), with
/// the asker's fingerprint and count of its documents there.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReconRange {
    pub lower: String,
    pub upper: Option<String>,
    pub fp: Fingerprint,
    pub count: u64,
}

/// A sub-range of a split: from the previous part's `upper` (the first: the asked range's
/// lower) to `upper`, with the answerer's fingerprint and count.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReconPart {
    pub upper: Option<String>,
    pub fp: Fingerprint,
    pub count: u64,
}

/// The answer about one [`ReconRange`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum ReconAnswer {
    /// Same fingerprint and count: nothing differs there.
    Same,
    /// The answerer's documents in the range with their item hashes (a small range).
    Items(Vec<(String, Fingerprint)>),
    /// The range split into 2..=[`RECON_FANOUT`] contiguous parts.
    Split(Vec<ReconPart>),
    /// No room left in this answer: ask again.
    Later,
}

/// A blob and its id. Bytes are serialized as one byte string, not element by element.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BlobBytes {
    pub id: [u8; 32],
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

/// A document id with its heads (automerge change hashes).
pub type DocHeads = (String, Vec<[u8; 32]>);

/// What one node asks another.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Request {
    /// One round of range-based reconciliation of the (document, heads) summaries (at most
    /// [`MAX_RECON_RANGES`] ranges). The first asks about the whole id space: equal
    /// summaries cost that one round trip.
    Recon { ranges: Vec<ReconRange> },
    /// Part `part` of `parts` of one automerge sync message about `doc`. The last part
    /// carries the blobs the message's new changes name, when they are few and small
    /// (at most [`MAX_ATTACHED_BLOBS`], [`MAX_ATTACHED_BYTES`] in all): a live append
    /// arrives whole, without a fetch. Other parts carry none.
    Sync {
        doc: String,
        part: u32,
        parts: u32,
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
        blobs: Vec<BlobBytes>,
    },
    /// Bytes of a blob from `offset`.
    Blob { id: [u8; 32], offset: u64 },
    /// Whole blobs, as many as fit in one frame (at most [`MAX_BLOB_IDS`] asked).
    Blobs { ids: Vec<[u8; 32]> },
}

/// The answer to a [`Request`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Response {
    /// One answer per range of a [`Request::Recon`], in order.
    Recon { answers: Vec<ReconAnswer> },
    /// The sync message part was taken.
    Ack,
    /// Up to [`CHUNK`] bytes of a blob of `total` bytes.
    Blob {
        total: u64,
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// The blob is not here.
    NoBlob,
    /// Answer to [`Request::Blobs`]: blobs in the order asked while they fit in a frame;
    /// those larger than a frame (fetch them with [`Request::Blob`]); those not here. Ids
    /// in none of the three were not reached: ask again.
    Blobs {
        found: Vec<BlobBytes>,
        big: Vec<[u8; 32]>,
        absent: Vec<[u8; 32]>,
    },
    /// The request was refused (bad document id, unknown account, undecodable message...).
    Rejected { why: String },
}

/// Reads one frame: a u32 length (big endian), then that many bytes of postcard.
pub async fn read_frame<T, M>(io: &mut T) -> io::Result<M>
where
    T: AsyncRead + Unpin + Send,
    M: for<'de> Deserialize<'de>,
{
    Ok(read_frame_sized(io).await?.0)
}

/// [`read_frame`], with the frame's size in bytes (length prefix included).
async fn read_frame_sized<T, M>(io: &mut T) -> io::Result<(M, u64)>
where
    T: AsyncRead + Unpin + Send,
    M: for<'de> Deserialize<'de>,
{
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the limit of {MAX_FRAME}"),
        ));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    let m =
        postcard::from_bytes(&buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok((m, 4 + len as u64))
}

/// Writes one frame (refusing to write what the peer would refuse to read); returns its
/// size in bytes (length prefix included).
pub async fn write_frame<T, M>(io: &mut T, m: &M) -> io::Result<u64>
where
    T: AsyncWrite + Unpin + Send,
    M: Serialize,
{
    let buf = postcard::to_stdvec(m).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    if buf.len() > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "frame of {} bytes exceeds the limit of {MAX_FRAME}",
                buf.len()
            ),
        ));
    }
    io.write_all(&(buf.len() as u32).to_be_bytes()).await?;
    io.write_all(&buf).await?;
    io.flush().await?;
    Ok(4 + buf.len() as u64)
}

/// Bytes of request-response frames exchanged with one peer (both directions, requests
/// and answers, length prefixes included).
#[derive(Debug, Default)]
pub struct Traffic {
    pub sent: AtomicU64,
    pub received: AtomicU64,
}

/// The [`Traffic`] one stream's frames count towards. The codec does not know the peer of
/// a stream; the event loop does, and fills the slot (for an inbound request: once the
/// request is read, before it can be answered).
pub type TrafficSlot = Arc<OnceLock<Arc<Traffic>>>;

/// A [`Request`] as the codec carries it: with its frame size when read, and the slot of
/// the traffic counters of its stream.
#[derive(Clone, Debug)]
pub struct Framed {
    pub msg: Request,
    /// Size of the frame read (0 for a request to send).
    pub bytes: u64,
    pub slot: TrafficSlot,
}

impl Framed {
    /// A request to send, counted towards `traffic`.
    pub fn outbound(msg: Request, traffic: Arc<Traffic>) -> Framed {
        Framed {
            msg,
            bytes: 0,
            slot: Arc::new(OnceLock::from(traffic)),
        }
    }
}

/// The request-response codec of [`PROTOCOL`]. libp2p uses one clone per stream, for the
/// request and its answer: the clone keeps that stream's traffic slot.
#[derive(Clone, Debug, Default)]
pub struct Codec {
    slot: Option<TrafficSlot>,
}

impl Codec {
    fn count(&self, bytes: u64, sent: bool) {
        if let Some(t) = self.slot.as_ref().and_then(|s| s.get()) {
            let c = if sent { &t.sent } else { &t.received };
            c.fetch_add(bytes, Ordering::Relaxed);
        }
    }
}

impl libp2p::request_response::Codec for Codec {
    type Protocol = StreamProtocol;
    type Request = Framed;
    type Response = Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Framed>
    where
        T: AsyncRead + Unpin + Send,
    {
        let (msg, bytes) = read_frame_sized(io).await?;
        let slot = TrafficSlot::default();
        self.slot = Some(slot.clone());
        Ok(Framed { msg, bytes, slot })
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        let (msg, bytes) = read_frame_sized(io).await?;
        self.count(bytes, false);
        Ok(msg)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Framed,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.slot = Some(req.slot.clone());
        let n = write_frame(io, &req.msg).await?;
        self.count(n, true);
        Ok(())
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Response,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let n = write_frame(io, &res).await?;
        self.count(n, true);
        Ok(())
    }
}

/// A gossip announcement: documents of the sender that changed, with their new heads.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Announce {
    pub docs: Vec<DocHeads>,
}

/// Documents per announcement, so one stays well under gossipsub's message limit.
pub const ANNOUNCE_BATCH: usize = 128;

impl Announce {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }

    pub fn decode(b: &[u8]) -> Option<Announce> {
        postcard::from_bytes(b).ok()
    }
}

/// Splits `bytes` into parts of at most `size` bytes (clamped to 1..=[`CHUNK`]), at least
/// one, so an empty message crosses.
pub fn parts(bytes: &[u8], size: usize) -> Vec<&[u8]> {
    if bytes.is_empty() {
        return vec![bytes];
    }
    bytes.chunks(size.clamp(1, CHUNK)).collect()
}

/// The size of the parts a node sends sync messages in: [`CHUNK`], or less with the
/// testing knob `DOVETAIL_SYNC_PART_BYTES` (so tests make every message cross in many
/// parts without building 4 MiB changes). Receivers accept any part up to [`CHUNK`].
pub fn sync_part_size() -> usize {
    static SIZE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *SIZE.get_or_init(|| {
        std::env::var("DOVETAIL_SYNC_PART_BYTES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(CHUNK)
            .clamp(1, CHUNK)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;

    #[test]
    fn frames_round_trip_and_oversized_ones_are_refused_before_reading() {
        futures::executor::block_on(async {
            let req = Request::Sync {
                doc: "acct/alice".into(),
                part: 0,
                parts: 1,
                bytes: vec![7; 1000],
                blobs: vec![BlobBytes {
                    id: [1; 32],
                    bytes: vec![2; 300],
                }],
            };
            let mut out = Cursor::new(Vec::new());
            write_frame(&mut out, &req).await.expect("write");
            let mut inp = Cursor::new(out.into_inner());
            let back: Request = read_frame(&mut inp).await.expect("read");
            assert_eq!(back, req);
            let mut out = Cursor::new(Vec::new());
            let n = write_frame(&mut out, &req).await.expect("write");
            assert_eq!(n as usize, out.get_ref().len());

            // A 100 MB length prefix with no body: refused at once, not awaited.
            let mut huge = (100_000_000u32).to_be_bytes().to_vec();
            huge.extend_from_slice(&[0; 16]);
            let err = read_frame::<_, Request>(&mut Cursor::new(huge))
                .await
                .expect_err("oversized");
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);

            // Garbage of a valid length does not decode.
            let mut garbage = 4u32.to_be_bytes().to_vec();
            garbage.extend_from_slice(&[0xff; 4]);
            assert!(read_frame::<_, Request>(&mut Cursor::new(garbage))
                .await
                .is_err());
        });
    }

    #[test]
    fn parts_cover_the_message_in_order() {
        let big = vec![1u8; CHUNK * 2 + 5];
        let p = parts(&big, CHUNK);
        assert_eq!(p.len(), 3);
        assert_eq!(p.iter().map(|x| x.len()).sum::<usize>(), big.len());
        assert_eq!(parts(&[], CHUNK).len(), 1);
        assert_eq!(parts(&[1, 2, 3], 0).len(), 3);
        assert_eq!(parts(&big, usize::MAX).len(), 3);
    }
}
