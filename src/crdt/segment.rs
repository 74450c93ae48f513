//! A segment document: a bounded set of a mailbox's messages with their claims, flags and
//! expunge marks. Written as packed records (`b/<tag>/<n>` = bytes, see [`super::bulk`]),
//! one or a few values per change; documents written before that hold flat automerge keys
//! at the root, still read:
//!
//! | key                  | value                          | meaning                      |
//! |----------------------|--------------------------------|------------------------------|
//! | `m/<guid>`           | `"<blob> <size> <internaldate>"` | a message (written once)   |
//! | `c/<guid>/<uid>`     | lamport counter                | a UID claim (never removed)  |
//! | `t/<guid>/<tag>/<flag>` | `true`                      | one add of a flag            |
//! | `f/<guid>/<flag>`    | `true`                         | a flag (older format, read)  |
//! | `x/<guid>`           | `true`                         | expunged (final)             |
//! | `b/<tag>/<n>`        | packed records (bytes)         | any of the above, and flag removals |
//!
//! Flags are an observed-remove set with explicit tags: every add of a flag is a new key
//! (or packed record) whose tag (`<lamport>.<writer>`) names the change that made it, and
//! removing a flag removes exactly the tags the remover's *view* held (a delete of the key
//! in the older format, a removal record now). So a flag is set iff some add of it
//! was not removed by a node that had seen that add: add-wins, decided by what each node
//! showed, not by what its document happened to hold (a remote change stored but not yet
//! applied to the view is never removed by a local `-FLAGS`). Every fact is a function of
//! the change alone, never of the document's current state, so the view is a function of
//! the set of applied changes. Claims live in the document of the node that made them (its
//! open segment), so a renumbering is one atomic change.
//!
//! Entries of a kind this version does not know (written by a newer one) are ignored one by
//! one: the known entries of the change still apply, so a rolling upgrade never drops a
//! claim. A malformed entry of a known kind makes the whole change malformed, which every
//! node skips alike.

use super::bulk::{self, Packer, Rec};
use super::meta::ChangeMeta;
use super::CrdtError;
use crate::model::{BlobId, Flag, Guid, NodeId, OpId, Uid};
use automerge::legacy::{Key, ObjectId, OpType};
use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, AutoCommit, Change, ScalarValue, ROOT};
use serde::{Deserialize, Serialize};

/// What a change says about a mailbox, in terms the view understands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fact {
    /// A message was added (its first claim follows in the same change).
    Message {
        guid: Guid,
        blob: BlobId,
        size: u64,
        internal_date: i64,
        /// The segment holding the message (where its flags and expunge mark go).
        home: SegmentRef,
    },
    /// `guid` claims `uid`, with op id `op`.
    Claim { guid: Guid, uid: Uid, op: OpId },
    /// The add of `flag` on `guid` named `tag` was made (`present`) or removed.
    Flag {
        guid: Guid,
        flag: Flag,
        tag: String,
        present: bool,
    },
    /// `guid` is expunged, for good.
    Expunge { guid: Guid },
}

/// A local write to a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocalOp {
    Add {
        guid: Guid,
        blob: BlobId,
        size: u64,
        internal_date: i64,
    },
    Claim {
        guid: Guid,
        uid: Uid,
    },
    /// Adds `flag` (a new tag named after this change).
    SetFlag {
        guid: Guid,
        flag: Flag,
    },
    /// Removes the adds of `flag` named `tags` (those the view holds).
    ClearFlag {
        guid: Guid,
        flag: Flag,
        tags: Vec<String>,
    },
    Expunge {
        guid: Guid,
    },
}

/// The automerge actor of a node: its node id bytes, so changes name their author.
pub fn actor(node: &NodeId) -> ActorId {
    ActorId::from(node.as_bytes().as_slice())
}

/// Names a segment of a mailbox: the node that opened it and its generation on that node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SegmentRef {
    pub node: NodeId,
    pub gen: u32,
}

/// One segment document.
pub struct Segment {
    pub doc: AutoCommit,
    pub id: SegmentRef,
}

impl Segment {
    /// An empty segment written by `node`.
    pub fn new(node: &NodeId, id: SegmentRef) -> Segment {
        Segment {
            doc: AutoCommit::new().with_actor(actor(node)),
            id,
        }
    }

    /// Wraps a loaded document, writing as `node`.
    pub fn from_doc(mut doc: AutoCommit, node: &NodeId, id: SegmentRef) -> Segment {
        doc.set_actor(actor(node));
        Segment { doc, id }
    }

    /// Writes `ops` as one change carrying `meta`, and returns the facts it establishes.
    /// The writes are packed ([`super::bulk`]): a few automerge values per change, not an
    /// automerge key per write.
    pub fn commit(&mut self, ops: &[LocalOp], meta: &ChangeMeta) -> Result<Vec<Fact>, CrdtError> {
        let mut facts = Vec::with_capacity(ops.len());
        let tag = tag_of(meta);
        let mut packer = Packer::new();
        for op in ops {
            match op {
                LocalOp::Add {
                    guid,
                    blob,
                    size,
                    internal_date,
                } => {
                    packer.push(&Rec::Add {
                        guid: *guid,
                        blob: *blob,
                        size: *size,
                        internal_date: *internal_date,
                    });
                    facts.push(Fact::Message {
                        guid: *guid,
                        blob: *blob,
                        size: *size,
                        internal_date: *internal_date,
                        home: self.id,
                    });
                }
                LocalOp::Claim { guid, uid } => {
                    packer.push(&Rec::Claim {
                        guid: *guid,
                        uid: *uid,
                    });
                    facts.push(Fact::Claim {
                        guid: *guid,
                        uid: *uid,
                        op: OpId {
                            counter: meta.lamport,
                            node: meta.node,
                        },
                    });
                }
                LocalOp::SetFlag { guid, flag } => {
                    packer.push(&Rec::SetFlag { guid: *guid, flag });
                    facts.push(Fact::Flag {
                        guid: *guid,
                        flag: flag.clone(),
                        tag: tag.clone(),
                        present: true,
                    });
                }
                LocalOp::ClearFlag { guid, flag, tags } => {
                    // A removal is a record of its own, whatever the add was (a packed
                    // record, a `t/` key or an older `f/` key): the key of an add is never
                    // deleted, so the removal says the same thing to every node.
                    for t in tags {
                        packer.push(&Rec::ClearFlag {
                            guid: *guid,
                            flag,
                            tag: t,
                        });
                        facts.push(Fact::Flag {
                            guid: *guid,
                            flag: flag.clone(),
                            tag: t.clone(),
                            present: false,
                        });
                    }
                }
                LocalOp::Expunge { guid } => {
                    packer.push(&Rec::Expunge { guid: *guid });
                    facts.push(Fact::Expunge { guid: *guid });
                }
            }
        }
        for (i, v) in packer.finish().into_iter().enumerate() {
            self.doc
                .put(ROOT, format!("b/{tag}/{i}"), ScalarValue::Bytes(v))?;
        }
        let opts = || CommitOptions::default().with_message(meta.encode());
        // A change without writes (a flag change that changed nothing) commits nothing in
        // automerge. The mailbox clock counts this change all the same, so it must exist:
        // make it empty.
        if self.doc.commit_with(opts()).is_none() {
            self.doc.empty_change(opts());
        }
        Ok(facts)
    }

    /// The facts of a change already in this document (a remote one): a function of the
    /// change alone. Unknown entry kinds are skipped; a malformed known entry is an error.
    pub fn facts_of(&self, change: &Change, meta: &ChangeMeta) -> Result<Vec<Fact>, CrdtError> {
        facts_of_change(change, meta, self.id)
    }
}

/// The facts of `change` to segment `home` (see [`Segment::facts_of`]).
pub fn facts_of_change(
    change: &Change,
    meta: &ChangeMeta,
    home: SegmentRef,
) -> Result<Vec<Fact>, CrdtError> {
    let expanded = change.decode();
    let tag = tag_of(meta);
    let mut facts = Vec::with_capacity(expanded.operations.len());
    for op in &expanded.operations {
        let key = match (&op.obj, &op.key) {
            (ObjectId::Root, Key::Map(k)) => k.as_str(),
            _ => {
                return Err(CrdtError::BadEntry {
                    key: format!("{:?}", op.key),
                    why: "not a root map key".into(),
                })
            }
        };
        let bad = |why: &str| CrdtError::BadEntry {
            key: key.to_string(),
            why: why.to_string(),
        };
        let is_put = matches!(op.action, OpType::Put(_));
        let is_delete = matches!(op.action, OpType::Delete);
        if let Some(rest) = key.strip_prefix("b/") {
            // Packed records: the key names the change (its tag) and the value's order.
            match &op.action {
                OpType::Put(ScalarValue::Bytes(v)) if rest.contains('/') => {
                    bulk::facts_of_value(key, v, meta, &tag, home, &mut facts)?
                }
                _ => return Err(bad("packed entry is not a put of bytes")),
            }
            continue;
        }
        let mut parts = key.splitn(3, '/');
        let kind = parts.next().unwrap_or("");
        if !matches!(kind, "m" | "c" | "f" | "t" | "x") {
            // A newer version's entry: its known entries still apply.
            tracing::debug!(key, "skipping an entry of an unknown kind");
            continue;
        }
        let guid = Guid::try_from(parts.next().unwrap_or("")).map_err(|_| bad("bad guid"))?;
        let rest = parts.next();
        match (kind, rest) {
            ("m", None) if is_put => {
                let v = match &op.action {
                    OpType::Put(ScalarValue::Str(s)) => s.to_string(),
                    _ => return Err(bad("message value is not a string")),
                };
                let mut f = v.split(' ');
                let blob = BlobId::try_from(f.next().unwrap_or(""))?;
                let size = f.next().and_then(|s| s.parse().ok());
                let date = f.next().and_then(|s| s.parse().ok());
                match (size, date, f.next()) {
                    (Some(size), Some(internal_date), None) => facts.push(Fact::Message {
                        guid,
                        blob,
                        size,
                        internal_date,
                        home,
                    }),
                    _ => return Err(bad("bad message value")),
                }
            }
            ("c", Some(uid)) if is_put => facts.push(Fact::Claim {
                guid,
                uid: Uid::try_from(uid)?,
                op: OpId {
                    counter: meta.lamport,
                    node: meta.node,
                },
            }),
            ("t", Some(rest)) if is_put || is_delete => {
                let (tag, flag) = rest.split_once('/').ok_or_else(|| bad("bad flag tag"))?;
                if tag.is_empty() {
                    return Err(bad("empty flag tag"));
                }
                facts.push(Fact::Flag {
                    guid,
                    flag: Flag::try_from(flag)?,
                    tag: tag.to_string(),
                    present: is_put,
                });
            }
            ("f", Some(flag)) if is_put || is_delete => facts.push(Fact::Flag {
                guid,
                flag: Flag::try_from(flag)?,
                tag: String::new(),
                present: is_put,
            }),
            ("x", None) if is_put => facts.push(Fact::Expunge { guid }),
            _ => return Err(bad("unexpected operation")),
        }
    }
    Ok(facts)
}

/// The tag of the flag adds a change makes: unique per (writer, change) within a mailbox.
fn tag_of(meta: &ChangeMeta) -> String {
    format!("{}.{}", meta.lamport, &meta.node.to_hex()[..16])
}
