//! FETCH of metadata only (UID, FLAGS, MODSEQ, RFC822.SIZE), encoded straight into bytes.
//!
//! `UID FETCH 1:* (FLAGS)` is what a client sends on every resync of a large mailbox: per
//! message, building imap-types values, queuing them in imap-next and encoding them cost
//! several times the ~40 bytes written. The bytes here are exactly imap-codec's (the test
//! below compares them on random rows), and a flag that imap-codec would leave out (not an
//! atom) is left out here too.

use crate::imap::convert::sendable;
use crate::imap::modseq::Issuer;
use crate::imap::session::{highest, Reply, Session};
use crate::model::{MailboxId, Uid};
use crate::store::rows_ref::rows_at_ref;
use imap_codec::imap_types::fetch::MessageDataItemName as Name;
use std::io::Write;
use std::num::NonZeroU32;

/// Messages encoded per replica job: a response is ~40 bytes, and each job is a round trip
/// to the replica thread.
const BATCH: usize = 8192;

/// Answers a FETCH of [`eligible`] items for `uids` (ascending, all known to the selection):
/// the rows are read in place and the responses encoded on the replica thread, so no row
/// is decoded into owned values or moved between threads. With `changed_since` (the
/// client's CHANGEDSINCE), only rows changed after it if this node issued that value, and
/// every row otherwise (docs/design.md 8: never none).
pub async fn fetch(
    s: &mut Session,
    names: Vec<Name<'static>>,
    uids: &[Uid],
    id: MailboxId,
    changed_since: Option<u64>,
    issuer: Issuer,
) -> Result<(), Reply> {
    let names = std::sync::Arc::new(names);
    let tells_flags = names.iter().any(|n| matches!(n, Name::Flags));
    for chunk in uids.chunks(BATCH) {
        let Some(sel) = s.selected() else {
            return Ok(());
        };
        let seqs = sel.seqs_of(chunk);
        let (chunk, names) = (chunk.to_vec(), names.clone());
        let (bytes, told) = s
            .call(move |r| {
                let since = match changed_since {
                    Some(cs) => issuer.local(cs, highest(r, &id)?),
                    None => None,
                };
                let mut out = Vec::with_capacity(chunk.len() * 48);
                let mut told = Vec::new();
                let mut k = 0;
                rows_at_ref(r.kv(), &id, &chunk, &mut |uid, row| {
                    while chunk[k] < uid {
                        k += 1;
                    }
                    let modseq = row.modseq.get();
                    if since.is_some_and(|c| modseq <= c) {
                        return;
                    }
                    let flags = row.flags.iter();
                    encode(
                        &mut out,
                        seqs[k],
                        uid,
                        &names,
                        flags,
                        row.size,
                        issuer.wire(modseq),
                    );
                    if tells_flags {
                        told.push((seqs[k], modseq));
                    }
                })?;
                Ok((out, told))
            })
            .await?;
        if let Some(sel) = s.selected() {
            for (seq, modseq) in told {
                sel.told_at(seq, modseq);
            }
        }
        s.push_raw(bytes);
        s.spill().await;
    }
    Ok(())
}

/// Whether every item asked for is encoded here.
pub fn eligible(names: &[Name<'_>]) -> bool {
    !names.is_empty()
        && names
            .iter()
            .all(|n| matches!(n, Name::Uid | Name::Flags | Name::ModSeq | Name::Rfc822Size))
}

/// Appends `* seq FETCH (...)\r\n` with `names` (which must be [`eligible`]) in order.
pub fn encode<'f>(
    out: &mut Vec<u8>,
    seq: NonZeroU32,
    uid: Uid,
    names: &[Name<'_>],
    flags: impl Iterator<Item = &'f str> + Clone,
    size: u64,
    modseq_wire: u64,
) {
    // Writes to a Vec do not fail.
    let _ = write!(out, "* {seq} FETCH (");
    for (i, n) in names.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        let _ = match n {
            Name::Uid => write!(out, "UID {}", uid.get()),
            Name::Flags => {
                out.extend_from_slice(b"FLAGS (");
                let mut first = true;
                for f in flags.clone().filter(|f| sendable(f)) {
                    if !first {
                        out.push(b' ');
                    }
                    first = false;
                    out.extend_from_slice(f.as_bytes());
                }
                out.push(b')');
                Ok(())
            }
            Name::ModSeq => write!(out, "MODSEQ ({modseq_wire})"),
            Name::Rfc822Size => write!(
                out,
                "RFC822.SIZE {}",
                u32::try_from(size).unwrap_or(u32::MAX)
            ),
            _ => Ok(()),
        };
    }
    out.extend_from_slice(b")\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::convert::flags_fetch;
    use crate::model::{Flag, FlagSet};
    use imap_codec::encode::Encoder;
    use imap_codec::imap_types::core::Vec1;
    use imap_codec::imap_types::fetch::MessageDataItem;
    use imap_codec::imap_types::response::{Data, Response};
    use imap_codec::ResponseCodec;
    use proptest::prelude::*;
    use std::num::NonZeroU64;

    fn codec(
        seq: NonZeroU32,
        uid: Uid,
        names: &[Name<'static>],
        flags: &FlagSet,
        size: u64,
        wire: u64,
    ) -> Vec<u8> {
        let items: Vec<MessageDataItem<'static>> = names
            .iter()
            .map(|n| match n {
                Name::Uid => MessageDataItem::Uid(NonZeroU32::new(uid.get()).unwrap()),
                Name::Flags => MessageDataItem::Flags(flags_fetch(flags)),
                Name::ModSeq => MessageDataItem::ModSeq(NonZeroU64::new(wire).unwrap()),
                Name::Rfc822Size => {
                    MessageDataItem::Rfc822Size(u32::try_from(size).unwrap_or(u32::MAX))
                }
                _ => unreachable!(),
            })
            .collect();
        let r = Response::Data(Data::Fetch {
            seq,
            items: Vec1::try_from(items).unwrap(),
        });
        ResponseCodec::default().encode(&r).dump()
    }

    const FLAGS: [&str; 9] = [
        "\\Seen",
        "\\Answered",
        "\\Flagged",
        "\\Deleted",
        "\\Draft",
        "$Work",
        "Junk",
        "$label1",
        "NonJunk",
    ];
    const NAMES: [Name<'static>; 4] = [Name::Uid, Name::Flags, Name::ModSeq, Name::Rfc822Size];

    proptest! {
        #[test]
        fn bytes_are_imap_codecs(
            seq in 1u32..,
            uid in 1u32..,
            names in prop::collection::vec(0usize..4, 1..5),
            flags in prop::collection::btree_set(0usize..9, 0..9),
            size in any::<u64>(),
            wire in 1u64..,
        ) {
            let names: Vec<Name<'static>> = names.into_iter().map(|i| NAMES[i].clone()).collect();
            let flags: FlagSet = flags.into_iter().map(|i| Flag::try_from(FLAGS[i]).unwrap()).collect();
            let (seq, uid) = (NonZeroU32::new(seq).unwrap(), Uid::new(uid).unwrap());
            prop_assert!(eligible(&names));
            let mut mine = Vec::new();
            encode(&mut mine, seq, uid, &names, flags.iter().map(|f| f.as_str()), size, wire);
            let theirs = codec(seq, uid, &names, &flags, size, wire);
            prop_assert_eq!(String::from_utf8_lossy(&mine), String::from_utf8_lossy(&theirs));
        }
    }

    #[test]
    fn bodies_and_dates_are_not_eligible() {
        assert!(!eligible(&[]));
        assert!(!eligible(&[Name::Uid, Name::InternalDate]));
        assert!(!eligible(&[Name::Envelope]));
        assert!(eligible(&[Name::Uid, Name::Flags, Name::ModSeq]));
    }
}
