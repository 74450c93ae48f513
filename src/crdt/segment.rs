//! A segment document: a bounded set of a mailbox's messages with their claims, flags and
//! expunge marks, as flat automerge maps at the root (flat keys are much faster to write and
//! read than one nested object per message):
//!
//! | key                  | value                          | meaning                      |
//! |----------------------|--------------------------------|------------------------------|
//! | `m/<guid>`           | `"<blob> <size> <internaldate>"` | a message (written once)   |
//! | `c/<guid>/<uid>`     | lamport counter                | a UID claim (never removed)  |
//! | `f/<guid>/<flag>`    | `true`                         | flag set; deleted to clear   |
//! | `x/<guid>`           | `true`                         | expunged (final)             |
//!
//! Flags get add-wins for free from automerge: a delete removes only the values its author
//! observed, so a concurrent set survives. Claims live in the document of the node that made
//! them (its open segment), so a renumbering is one atomic change.

use super::meta::ChangeMeta;
use super::CrdtError;
use crate::model::{BlobId, Flag, Guid, NodeId, OpId, Uid};
use automerge::legacy::{Key, ObjectId, OpType};
use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, AutoCommit, Change, ReadDoc, ScalarValue, ROOT};
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
    /// After this change, `flag` is (or is not) set on `guid` in the document.
    Flag {
        guid: Guid,
        flag: Flag,
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
    SetFlag {
        guid: Guid,
        flag: Flag,
    },
    ClearFlag {
        guid: Guid,
        flag: Flag,
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

    /// Whether `flag` is currently set on `guid` in this document.
    pub fn has_flag(&self, guid: &Guid, flag: &Flag) -> bool {
        matches!(self.doc.get(ROOT, flag_key(guid, flag)), Ok(Some(_)))
    }

    /// Writes `ops` as one change carrying `meta`, and returns the facts it establishes.
    pub fn commit(&mut self, ops: &[LocalOp], meta: &ChangeMeta) -> Result<Vec<Fact>, CrdtError> {
        let mut facts = Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                LocalOp::Add {
                    guid,
                    blob,
                    size,
                    internal_date,
                } => {
                    let v = format!("{blob} {size} {internal_date}");
                    self.doc.put(ROOT, format!("m/{guid}"), v)?;
                    facts.push(Fact::Message {
                        guid: *guid,
                        blob: *blob,
                        size: *size,
                        internal_date: *internal_date,
                        home: self.id,
                    });
                }
                LocalOp::Claim { guid, uid } => {
                    self.doc
                        .put(ROOT, format!("c/{guid}/{uid}"), meta.lamport)?;
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
                    self.doc.put(ROOT, flag_key(guid, flag), true)?;
                    facts.push(Fact::Flag {
                        guid: *guid,
                        flag: flag.clone(),
                        present: true,
                    });
                }
                LocalOp::ClearFlag { guid, flag } => {
                    if self.has_flag(guid, flag) {
                        self.doc.delete(ROOT, flag_key(guid, flag))?;
                    }
                    facts.push(Fact::Flag {
                        guid: *guid,
                        flag: flag.clone(),
                        present: false,
                    });
                }
                LocalOp::Expunge { guid } => {
                    self.doc.put(ROOT, format!("x/{guid}"), true)?;
                    facts.push(Fact::Expunge { guid: *guid });
                }
            }
        }
        let opts = || CommitOptions::default().with_message(meta.encode());
        // automerge skips a put of the value a key already holds and a delete of a missing
        // key (both happen when a remote change is in the document but not yet applied to
        // the view), and commits nothing when no operation is left. The mailbox clock
        // counts this change all the same, so it must exist: make it empty.
        if self.doc.commit_with(opts()).is_none() {
            self.doc.empty_change(opts());
        }
        Ok(facts)
    }

    /// The facts of a change already in this document (a remote one). Flag facts report the
    /// flag as the document holds it now, so that the view ends where automerge's add-wins
    /// merge ends, whatever order changes were applied in.
    pub fn facts_of(&self, change: &Change, meta: &ChangeMeta) -> Result<Vec<Fact>, CrdtError> {
        let expanded = change.decode();
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
            let mut parts = key.splitn(3, '/');
            let kind = parts.next().unwrap_or("");
            let guid = Guid::try_from(parts.next().unwrap_or("")).map_err(|_| bad("bad guid"))?;
            let rest = parts.next();
            match (kind, rest, is_put) {
                ("m", None, true) => {
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
                            home: self.id,
                        }),
                        _ => return Err(bad("bad message value")),
                    }
                }
                ("c", Some(uid), true) => facts.push(Fact::Claim {
                    guid,
                    uid: Uid::try_from(uid)?,
                    op: OpId {
                        counter: meta.lamport,
                        node: meta.node,
                    },
                }),
                ("f", Some(flag), _) => {
                    let flag = Flag::try_from(flag)?;
                    let present = self.has_flag(&guid, &flag);
                    facts.push(Fact::Flag {
                        guid,
                        flag,
                        present,
                    });
                }
                ("x", None, true) => facts.push(Fact::Expunge { guid }),
                _ => return Err(bad("unknown entry")),
            }
        }
        Ok(facts)
    }
}

fn flag_key(guid: &Guid, flag: &Flag) -> String {
    format!("f/{guid}/{flag}")
}
