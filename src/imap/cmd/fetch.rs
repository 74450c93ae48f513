//! FETCH and UID FETCH: FLAGS, UID, INTERNALDATE, RFC822.SIZE, ENVELOPE, BODY,
//! BODYSTRUCTURE, BODY[section]<partial> and BODY.PEEK, RFC822, RFC822.HEADER, RFC822.TEXT
//! and the macros. Bodies are read in batches so a `1:* BODY[]` never holds the whole
//! mailbox, and the responses are written as the batches go ([`Session::spill`]); a
//! non-PEEK body fetch sets `\Seen` durably before the data is sent.

use crate::crdt::view::ViewRow;
use crate::imap::convert::{datetime, flags_fetch, nstring};
use crate::imap::mime::Mime;
use crate::imap::modseq::Issuer;
use crate::imap::session::{highest, Reply, Session, State};
use crate::model::{Flag, FlagSet, Uid};
use crate::node::FlagOp;
use imap_codec::imap_types::command::FetchModifier;
use imap_codec::imap_types::core::Vec1;
use imap_codec::imap_types::core::{LiteralMode, NString8};
use imap_codec::imap_types::extensions::binary::Literal8;
use imap_codec::imap_types::fetch::{
    Macro, MacroOrMessageDataItemNames, MessageDataItem, MessageDataItemName as Name,
};
use imap_codec::imap_types::response::{Code, Data};
use imap_codec::imap_types::sequence::SequenceSet;
use std::num::{NonZeroU32, NonZeroU64};

/// Messages read per replica job when bodies are read (they are held in memory together).
const BATCH: usize = 128;
/// Body bytes read per replica job at most (one larger message is read alone).
const BATCH_BYTES: u64 = 8 * 1024 * 1024;
/// Messages read per replica job for metadata only (UID, FLAGS, MODSEQ, sizes, dates): a
/// row is tens of bytes, and each job is a round trip to the replica thread.
const META_BATCH: usize = 4096;

fn expand(m: MacroOrMessageDataItemNames<'static>) -> Vec<Name<'static>> {
    match m {
        MacroOrMessageDataItemNames::Macro(Macro::Fast) => {
            vec![Name::Flags, Name::InternalDate, Name::Rfc822Size]
        }
        MacroOrMessageDataItemNames::Macro(Macro::All) => {
            vec![
                Name::Flags,
                Name::InternalDate,
                Name::Rfc822Size,
                Name::Envelope,
            ]
        }
        MacroOrMessageDataItemNames::Macro(Macro::Full) => vec![
            Name::Flags,
            Name::InternalDate,
            Name::Rfc822Size,
            Name::Envelope,
            Name::Body,
        ],
        MacroOrMessageDataItemNames::MessageDataItemNames(v) => v,
        // A macro added by a later imap-types: its basic items.
        MacroOrMessageDataItemNames::Macro(_) => vec![Name::Flags],
    }
}

fn needs_body(n: &Name<'_>) -> bool {
    matches!(
        n,
        Name::Envelope
            | Name::Body
            | Name::BodyStructure
            | Name::BodyExt { .. }
            | Name::Rfc822
            | Name::Rfc822Header
            | Name::Rfc822Text
            | Name::Binary { .. }
            | Name::BinarySize { .. }
    )
}

fn sets_seen(n: &Name<'_>) -> bool {
    matches!(
        n,
        Name::BodyExt { peek: false, .. }
            | Name::Binary { peek: false, .. }
            | Name::Rfc822
            | Name::Rfc822Text
    )
}

/// One message as read for a FETCH.
struct Got {
    uid: Uid,
    row: ViewRow,
    raw: Option<Vec<u8>>,
    /// `\Seen` was set by this fetch.
    seen_now: bool,
}

pub async fn fetch(
    s: &mut Session,
    set: &SequenceSet,
    what: MacroOrMessageDataItemNames<'static>,
    by_uid: bool,
    modifiers: &[FetchModifier],
) -> Reply {
    let mut changed_since = None;
    let mut vanished = false;
    for m in modifiers {
        match m {
            FetchModifier::ChangedSince(v) => changed_since = Some(v.get()),
            FetchModifier::Vanished => vanished = true,
        }
    }
    // RFC 7162 3.2.6: VANISHED only in UID FETCH, with CHANGEDSINCE, once QRESYNC is on.
    if vanished && !(by_uid && changed_since.is_some() && s.qresync) {
        return Reply::bad("VANISHED needs UID FETCH, CHANGEDSINCE and ENABLE QRESYNC");
    }
    let State::Selected { mailbox, .. } = &s.state else {
        return Reply::bad("no mailbox selected");
    };
    if let (true, Some(cs)) = (vanished, changed_since) {
        // The UIDs of the set that vanished since the client's value, except those this
        // session still numbers: they are told as plain VANISHED when expunges may be.
        let star = mailbox.known().last().map_or(0, |u| u.get());
        let scope = crate::imap::uidset::of_set(set, star);
        let (id, issuer) = (mailbox.id, s.ctx.issuer);
        let got = s
            .call(move |r| {
                let since = super::qresync::since(r, &id, issuer, cs)?;
                super::qresync::vanished(r, &id, since, Some(&scope), None)
            })
            .await;
        let gone = match got {
            Ok(g) => g,
            Err(r) => return r,
        };
        let known = match s.selected() {
            Some(sel) => sel.known().to_vec(),
            None => vec![],
        };
        let gone = crate::imap::uidset::minus(&gone, &known);
        if let Some(known_uids) = crate::imap::uidset::to_set(&gone) {
            s.data(Data::Vanished {
                earlier: true,
                known_uids,
            });
        }
    }
    let State::Selected { account, mailbox } = &s.state else {
        return Reply::bad("no mailbox selected");
    };
    let uids = match mailbox.resolve(set, by_uid) {
        Ok(u) => u,
        Err(_) => return Reply::bad("invalid message sequence number"),
    };
    let mut names = expand(what);
    // CHANGEDSINCE implies MODSEQ; either turns CONDSTORE on (RFC 7162 3.1).
    if changed_since.is_some() && !names.iter().any(|n| matches!(n, Name::ModSeq)) {
        names.push(Name::ModSeq);
    }
    let condstore_now = names.iter().any(|n| matches!(n, Name::ModSeq));
    if by_uid && !names.iter().any(|n| matches!(n, Name::Uid)) {
        names.insert(0, Name::Uid);
    }
    let body = names.iter().any(needs_body);
    // Metadata only: each response is encoded straight into bytes (`fetch_meta`).
    let meta = super::fetch_meta::eligible(&names);
    let seen = !mailbox.read_only && names.iter().any(sets_seen);
    let (a, name, id) = (account.clone(), mailbox.name.clone(), mailbox.id);
    let now = crate::node::daemon::now();
    let mut wrote = false;
    let mut cte_ok = true;
    let issuer = s.ctx.issuer;
    s.condstore |= condstore_now;
    if meta {
        // Never sets \Seen (no body item): read and encoded on the replica thread.
        return match super::fetch_meta::fetch(s, names, &uids, id, changed_since, issuer).await {
            Ok(()) => Reply::ok("FETCH completed"),
            Err(r) => r,
        };
    }
    let mut pos = 0;
    while pos < uids.len() {
        let end = uids.len().min(pos + if body { BATCH } else { META_BATCH });
        let chunk = uids[pos..end].to_vec();
        let (a, name) = (a.clone(), name.clone());
        let res = s
            .call(move |r| {
                let seen_flag = Flag::seen();
                let mut rows = crate::store::tables::rows_at(r.kv(), &id, &chunk)?;
                // A value this node did not issue cannot be compared: every message counts
                // as changed (docs/design.md 8), never none.
                if let Some(cs) = changed_since {
                    if let Some(c) = issuer.local(cs, highest(r, &id)?) {
                        rows.retain(|(_, row)| row.modseq.get() > c);
                    }
                }
                // The bodies of one job are held together: at most BATCH_BYTES of them (and
                // at least one message); the rest of the chunk is the next job's.
                let mut consumed = chunk.len();
                if body {
                    let mut total = 0u64;
                    let over = rows.iter().position(|(_, row)| {
                        total += row.size;
                        total > BATCH_BYTES
                    });
                    if let Some(k) = over.map(|k| k.max(1)).filter(|&k| k < rows.len()) {
                        let first_left = rows[k].0;
                        consumed = chunk.partition_point(|u| *u < first_left);
                        rows.truncate(k);
                    }
                }
                let unseen: Vec<Uid> = rows
                    .iter()
                    .filter(|(_, row)| !row.flags.contains(&seen_flag))
                    .map(|(u, _)| *u)
                    .collect();
                let mut marked = vec![];
                if seen && !unseen.is_empty() {
                    if let Some(set) = crate::imap::convert::model_set(&unseen) {
                        let op = FlagOp::Add(FlagSet::from([seen_flag.clone()]));
                        r.store_flags(&a, &name, &set, &op, now)?;
                        marked = unseen;
                        let uids: Vec<Uid> = rows.iter().map(|(u, _)| *u).collect();
                        rows = crate::store::tables::rows_at(r.kv(), &id, &uids)?;
                    }
                }
                let mut out = Vec::with_capacity(rows.len());
                for (uid, row) in rows {
                    let raw = if body {
                        let b = r.blob(&row.blob)?;
                        if b.is_none() {
                            tracing::error!(%uid, blob = %row.blob.to_hex(), "shown message without its blob");
                        }
                        b
                    } else {
                        None
                    };
                    let seen_now = marked.binary_search(&uid).is_ok();
                    out.push(Got { uid, row, raw, seen_now });
                }
                Ok((out, consumed))
            })
            .await;
        let got = match res {
            Ok((g, consumed)) => {
                pos += consumed;
                g
            }
            Err(r) => return r,
        };
        for g in got {
            wrote |= g.seen_now;
            cte_ok &= respond(s, &names, g, issuer);
        }
        s.spill().await;
    }
    if wrote {
        s.wrote();
    }
    if !cte_ok {
        // RFC 3516 4.3: the other items were sent; BINARY of such a part cannot be.
        return Reply::no("a part has a Content-Transfer-Encoding BINARY cannot decode")
            .code(Code::UnknownCte);
    }
    Reply::ok("FETCH completed")
}

/// The `<origin.length>` part of `data` (all of it without a partial; empty past the end).
fn cut(data: Vec<u8>, partial: Option<(u32, NonZeroU32)>) -> Vec<u8> {
    match partial {
        None => data,
        Some((origin, len)) => {
            let start = (origin as usize).min(data.len());
            let end = start.saturating_add(len.get() as usize).min(data.len());
            data[start..end].to_vec()
        }
    }
}

/// Queues the FETCH response of one message; false if a BINARY item met a transfer
/// encoding it cannot undo (that item is left out).
fn respond(s: &mut Session, names: &[Name<'static>], g: Got, issuer: Issuer) -> bool {
    let mut unknown_cte = false;
    let condstore = s.condstore;
    let wire = NonZeroU64::new(issuer.wire(g.row.modseq.get())).unwrap_or(NonZeroU64::MIN);
    let Some(sel) = s.selected() else {
        return true;
    };
    let Some(seq) = sel.seq_of(g.uid) else {
        return true;
    };
    let empty = Vec::new();
    let raw = g.raw.as_ref().unwrap_or(&empty);
    let mime = g.raw.as_ref().map(|r| Mime::parse(r));
    let mut items = Vec::with_capacity(names.len() + 1);
    let mut told_flags = false;
    for n in names {
        let item = match n {
            Name::Uid => MessageDataItem::Uid(NonZeroU32::new(g.uid.get()).expect("not 0")),
            Name::Flags => {
                told_flags = true;
                MessageDataItem::Flags(flags_fetch(&g.row.flags))
            }
            Name::InternalDate => MessageDataItem::InternalDate(datetime(g.row.internal_date)),
            Name::Rfc822Size => {
                MessageDataItem::Rfc822Size(u32::try_from(g.row.size).unwrap_or(u32::MAX))
            }
            Name::ModSeq => MessageDataItem::ModSeq(wire),
            Name::Envelope => match &mime {
                Some(m) => MessageDataItem::Envelope(m.envelope()),
                None => continue,
            },
            Name::Body => match &mime {
                Some(m) => MessageDataItem::Body(m.body_structure(false)),
                None => continue,
            },
            Name::BodyStructure => match &mime {
                Some(m) => MessageDataItem::BodyStructure(m.body_structure(true)),
                None => continue,
            },
            Name::BodyExt {
                section, partial, ..
            } => {
                let Some(m) = &mime else { continue };
                let data = cut(m.section(section.as_ref()), *partial);
                MessageDataItem::BodyExt {
                    section: section.clone(),
                    // The origin is the octet asked for, even past the end (RFC 3501 7.4.2).
                    origin: partial.map(|(origin, _)| origin),
                    data: nstring(&data),
                }
            }
            Name::Rfc822 => MessageDataItem::Rfc822(nstring(raw)),
            Name::Rfc822Header => match &mime {
                Some(m) => MessageDataItem::Rfc822Header(nstring(m.header_bytes())),
                None => continue,
            },
            Name::Rfc822Text => match &mime {
                Some(m) => MessageDataItem::Rfc822Text(nstring(m.body_bytes())),
                None => continue,
            },
            Name::Binary {
                section, partial, ..
            } => {
                let Some(m) = &mime else { continue };
                let Ok(data) = m.binary(section) else {
                    unknown_cte = true;
                    continue;
                };
                MessageDataItem::Binary {
                    section: section.clone(),
                    value: NString8::Literal8(Literal8 {
                        data: cut(data, *partial).into(),
                        mode: LiteralMode::Sync,
                    }),
                }
            }
            Name::BinarySize { section } => {
                let Some(m) = &mime else { continue };
                let Ok(data) = m.binary(section) else {
                    unknown_cte = true;
                    continue;
                };
                MessageDataItem::BinarySize {
                    section: section.clone(),
                    size: u32::try_from(data.len()).unwrap_or(u32::MAX),
                }
            }
        };
        items.push(item);
    }
    // A flag change this fetch made is told with it (RFC 3501 6.4.5).
    if g.seen_now && !told_flags {
        told_flags = true;
        items.push(MessageDataItem::Flags(flags_fetch(&g.row.flags)));
        if condstore && !names.iter().any(|n| matches!(n, Name::ModSeq)) {
            items.push(MessageDataItem::ModSeq(wire));
        }
    }
    if told_flags {
        sel.told(g.uid, g.row.modseq.get());
    }
    if let Ok(items) = Vec1::try_from(items) {
        s.data(Data::Fetch { seq, items });
    }
    !unknown_cte
}
