//! The body copier of an offline sync: a second thread that copies the bodies one data dir
//! lacks from the other while the sync goes on with the next documents and delivers what
//! earlier copies completed.
//!
//! Copying bodies (reading them in pack order, checking their hashes, writing them in 8 MiB
//! pack writes) was ~45% of a sync into an empty data dir and the document work (sync
//! messages, delivering the changes) the rest, one after the other on one thread. The
//! copier only touches the two stores' bodies: telling the receiving replica's waiting
//! changes that their bodies arrived, and delivering them, stay on the caller's thread, and
//! a body is reported only after its pack write returned, so the delivery's flush (pack
//! `fdatasync` first) keeps "blobs before claims".

use super::NodeError;
use crate::model::BlobId;
use crate::store::Kv;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;

/// Bytes of bodies read before they are stored in one pack write.
pub(crate) const COPY_BATCH_BYTES: usize = 1024 * 1024;

/// Which way a copy goes: from the first replica of the pair to the second, or back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Way {
    AtoB,
    BtoA,
}

/// Bodies a copy stored (in `to`), and their bytes.
pub(crate) struct Copied {
    pub way: Way,
    pub ids: Vec<BlobId>,
    pub bytes: u64,
}

/// What the copier thread tells: a batch stored, or a copy ended (each queued copy ends
/// once).
enum Report {
    Stored(Copied),
    /// A copy of this many bodies ended.
    Ended(Result<(), NodeError>, usize),
}

/// The caller's end of the copier thread.
pub(crate) struct Copier {
    jobs: Option<Sender<(Way, Vec<BlobId>)>>,
    done: Receiver<Report>,
    /// Bodies named by queued copies that have not ended (a copy of none is never queued,
    /// so this is 0 exactly when no copy is outstanding).
    queued: usize,
}

/// Copies `ids` from `from` to `to` in pack order, batch by batch; calls `each` with the
/// bodies of every batch after it is stored.
pub(crate) fn copy_batches(
    from: &dyn Kv,
    to: &dyn Kv,
    ids: &[BlobId],
    each: &mut dyn FnMut(Vec<BlobId>, u64),
) -> Result<(), NodeError> {
    // A body an earlier copy stored (two documents naming it, their copies queued one
    // after the other) is not read again.
    let all: Vec<[u8; 32]> = ids.iter().map(|id| id.0).collect();
    let have = to.blob_has_many(&all)?;
    let raw: Vec<[u8; 32]> = all
        .into_iter()
        .zip(have)
        .filter_map(|(id, has)| (!has).then_some(id))
        .collect();
    // The bodies of a batch, one after the other in `data` (kept from batch to batch: a
    // buffer per body was a malloc, a free and fresh pages for every message).
    let mut data: Vec<u8> = Vec::with_capacity(2 * COPY_BATCH_BYTES);
    let mut batch: Vec<([u8; 32], std::ops::Range<usize>)> = Vec::new();
    let mut failed = None;
    let mut store = |data: &mut Vec<u8>,
                     batch: &mut Vec<([u8; 32], std::ops::Range<usize>)>|
     -> Result<(), NodeError> {
        if batch.is_empty() {
            return Ok(());
        }
        let items: Vec<([u8; 32], &[u8])> =
            batch.iter().map(|(i, r)| (*i, &data[r.clone()])).collect();
        to.blob_put_many(&items)?;
        each(
            batch.drain(..).map(|(i, _)| BlobId(i)).collect(),
            data.len() as u64,
        );
        data.clear();
        Ok(())
    };
    // `blob_get_many` hands over only bodies whose hash matches their id.
    from.blob_get_many(&raw, &mut |id, b| {
        let at = data.len();
        data.extend_from_slice(b);
        batch.push((*id, at..data.len()));
        if data.len() >= COPY_BATCH_BYTES {
            if let Err(e) = store(&mut data, &mut batch) {
                failed = Some(e);
                return false;
            }
        }
        true
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    store(&mut data, &mut batch)
}

impl Copier {
    /// Starts the copier on `scope`, between the stores `a` and `b`.
    pub(crate) fn start<'s>(
        scope: &'s std::thread::Scope<'s, '_>,
        a: Arc<dyn Kv>,
        b: Arc<dyn Kv>,
    ) -> Copier {
        let (jobs, rx) = channel::<(Way, Vec<BlobId>)>();
        let (tx, done) = channel();
        scope.spawn(move || {
            for (way, ids) in rx {
                let n = ids.len();
                let (from, to) = match way {
                    Way::AtoB => (&a, &b),
                    Way::BtoA => (&b, &a),
                };
                let r = copy_batches(from.as_ref(), to.as_ref(), &ids, &mut |ids, bytes| {
                    let _ = tx.send(Report::Stored(Copied { way, ids, bytes }));
                });
                if tx.send(Report::Ended(r, n)).is_err() {
                    return;
                }
            }
        });
        Copier {
            jobs: Some(jobs),
            done,
            queued: 0,
        }
    }

    /// Queues a copy of `ids` (none: nothing queued).
    pub(crate) fn send(&mut self, way: Way, ids: Vec<BlobId>) {
        if ids.is_empty() {
            return;
        }
        if let Some(j) = &self.jobs {
            let n = ids.len();
            if j.send((way, ids)).is_ok() {
                self.queued += n;
            }
        }
    }

    /// Whether a queued copy has not ended yet.
    pub(crate) fn busy(&self) -> bool {
        self.queued > 0
    }

    /// What the copier stored since the last call, waiting until it reported at least
    /// `least` bodies or every queued copy ended (0: what is reported now, no wait). The
    /// first failed copy's error, if any.
    pub(crate) fn take(&mut self, least: usize) -> Result<Vec<Copied>, NodeError> {
        self.take_until(least, usize::MAX)
    }

    /// What the copier stored since the last call, waiting while copies of more than `max`
    /// bodies are queued: the documents synced meanwhile wait in memory for their bodies
    /// (the pending index), so a copier far behind would hold a whole mailbox's there.
    pub(crate) fn take_below(&mut self, max: usize) -> Result<Vec<Copied>, NodeError> {
        self.take_until(0, max)
    }

    fn take_until(&mut self, least: usize, max: usize) -> Result<Vec<Copied>, NodeError> {
        let mut out = Vec::new();
        let mut n = 0;
        while self.queued > 0 {
            let got = if (least > 0 && n < least) || self.queued > max {
                match self.done.recv() {
                    Ok(g) => g,
                    Err(_) => return Err(NodeError::Io("the body copier stopped".into())),
                }
            } else {
                match self.done.try_recv() {
                    Ok(g) => g,
                    Err(_) => break,
                }
            };
            match got {
                Report::Stored(c) => {
                    n += c.ids.len();
                    out.push(c);
                }
                Report::Ended(r, ids) => {
                    self.queued -= ids;
                    r?;
                }
            }
        }
        Ok(out)
    }
}

impl Drop for Copier {
    fn drop(&mut self) {
        // Ends the thread's loop (the scope joins it).
        self.jobs.take();
    }
}
