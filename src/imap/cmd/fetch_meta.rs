//! FETCH of metadata only (UID, FLAGS, MODSEQ, RFC822.SIZE), encoded straight into bytes.
//!
//! `UID FETCH 1:* (FLAGS)` is what a client sends on every resync of a large mailbox: per
//! message, building imap-types values, queuing them in imap-next and encoding them cost
//! several times the ~40 bytes written. The bytes here are exactly imap-codec's (the test
//! below compares them on random rows), and a flag that imap-codec would leave out (not an
//! atom) is left out here too.

use crate::imap::convert::sendable;
use crate::model::{FlagSet, Uid};
use imap_codec::imap_types::fetch::MessageDataItemName as Name;
use std::io::Write;
use std::num::NonZeroU32;

/// Whether every item asked for is encoded here.
pub fn eligible(names: &[Name<'_>]) -> bool {
    !names.is_empty()
        && names
            .iter()
            .all(|n| matches!(n, Name::Uid | Name::Flags | Name::ModSeq | Name::Rfc822Size))
}

/// Appends `* seq FETCH (...)\r\n` with `names` (which must be [`eligible`]) in order.
pub fn encode(
    out: &mut Vec<u8>,
    seq: NonZeroU32,
    uid: Uid,
    names: &[Name<'_>],
    flags: &FlagSet,
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
                for f in flags.iter().filter(|f| sendable(f)) {
                    if !first {
                        out.push(b' ');
                    }
                    first = false;
                    out.extend_from_slice(f.as_str().as_bytes());
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
    use crate::model::Flag;
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
            encode(&mut mine, seq, uid, &names, &flags, size, wire);
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
