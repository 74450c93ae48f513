//! The writer id: who a data dir's changes say they are from. automerge numbers an actor's
//! changes 1, 2, 3... per document and the mailbox clocks number a writer's changes per
//! mailbox; both assume a writer never goes back in time. A data dir restored from a backup,
//! or copied and started beside its original, would reuse those numbers: automerge refuses a
//! second change with the same (actor, seq) and peers drop a mailbox change whose number
//! they have already applied, so writes would be lost.
//!
//! So a data dir writes as its node id until it is copied or restored, and as a fresh random
//! writer id after that. A copy or restore is detected from the place of the store on disk:
//! the data dir remembers the (device, inode) of its `db` directory, and `cp -r`, `rsync`,
//! `tar x` or a backup tool's restore all create a new directory. A data dir that receives a
//! change its own writer made but it does not have (a rollback the inode cannot see, e.g. a
//! VM snapshot) switches to a fresh writer too, before it writes again.

use super::{NodeError, Replica};
use crate::model::NodeId;
use crate::store::{tables, Kv};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Where a store lives on disk: a copy or restore gets a new inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirPlace {
    pub dev: u64,
    pub ino: u64,
}

impl DirPlace {
    pub fn of(path: &Path) -> Result<DirPlace, NodeError> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path)
            .map_err(|e| NodeError::Io(format!("{}: {e}", path.display())))?;
        Ok(DirPlace {
            dev: m.dev(),
            ino: m.ino(),
        })
    }
}

/// The persisted writer record (key [`tables::KEY_WRITER`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct WriterRec {
    writer: NodeId,
    place: Option<DirPlace>,
    /// How many times this data dir changed writer (for logs and `status`).
    incarnation: u32,
}

/// The writer this store writes as; a fresh one if the store was copied or restored since
/// it last recorded its place. `peer` is the node id, the writer of a data dir never copied.
pub(crate) fn writer_for(
    kv: &dyn Kv,
    peer: &NodeId,
    place: Option<DirPlace>,
) -> Result<NodeId, NodeError> {
    let rec: Option<WriterRec> = match kv.get(tables::KEY_WRITER)? {
        Some(b) => Some(tables::decode(tables::KEY_WRITER, &b)?),
        None => None,
    };
    let rec = match rec {
        None => WriterRec {
            writer: *peer,
            place,
            incarnation: 0,
        },
        Some(r) if place.is_some() && r.place.is_some() && r.place != place => {
            let fresh = fresh_writer();
            tracing::warn!(
                old = %r.writer, new = %fresh,
                "this data dir was copied or restored: it writes under a new writer id from now on"
            );
            forget_sync_states(kv)?;
            WriterRec {
                writer: fresh,
                place,
                incarnation: r.incarnation + 1,
            }
        }
        Some(r) if r.place.is_none() && place.is_some() => WriterRec { place, ..r },
        Some(r) => return Ok(r.writer),
    };
    kv.apply(vec![(
        tables::KEY_WRITER.to_vec(),
        Some(tables::encode(&rec)),
    )])?;
    kv.flush()?;
    Ok(rec.writer)
}

fn fresh_writer() -> NodeId {
    NodeId(rand::random())
}

/// Drops every persisted sync state: they describe what peers had in common with the
/// writer this data dir no longer is.
fn forget_sync_states(kv: &dyn Kv) -> Result<(), NodeError> {
    let mut keys = Vec::new();
    kv.scan(b"S", &mut |k, _| {
        keys.push((k.to_vec(), None));
        true
    })?;
    if !keys.is_empty() {
        kv.apply(keys)?;
    }
    Ok(())
}

impl Replica {
    /// Switches to a fresh writer id, durably, before anything else is written: for a data
    /// dir known to have gone back in time (a restore the inode check cannot see). Live
    /// sync sessions are ended: peers see the new writer as a new peer.
    pub fn new_writer(&mut self) -> Result<NodeId, NodeError> {
        let rec: Option<WriterRec> = match self.kv.get(tables::KEY_WRITER)? {
            Some(b) => Some(tables::decode(tables::KEY_WRITER, &b)?),
            None => None,
        };
        let fresh = fresh_writer();
        let rec = WriterRec {
            writer: fresh,
            place: rec.as_ref().and_then(|r| r.place),
            incarnation: rec.map_or(1, |r| r.incarnation + 1),
        };
        forget_sync_states(self.kv.as_ref())?;
        self.kv.apply(vec![(
            tables::KEY_WRITER.to_vec(),
            Some(tables::encode(&rec)),
        )])?;
        self.kv.flush()?;
        tracing::warn!(old = %self.node, new = %fresh, "switching to a new writer id");
        self.node = fresh;
        self.end_all_sessions();
        self.close_docs();
        Ok(fresh)
    }
}
