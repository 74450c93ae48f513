//! The replica actor: one thread owns the [`Replica`] (its storage calls block, and one
//! writer at a time is what its transactions assume); async tasks send it jobs and await
//! the answers.

use super::{MailboxEvent, Replica};
use std::sync::mpsc;
use std::time::Duration;
use tokio::sync::{broadcast, oneshot};

type Job = Box<dyn FnOnce(&mut Replica) + Send>;

/// A cloneable handle on the replica thread.
#[derive(Clone)]
pub struct ReplicaHandle {
    /// A std channel: sending never blocks (unbounded), from async code or not, and the
    /// replica thread can wait with a timeout (to notice it is idle).
    tx: mpsc::Sender<Job>,
    events: broadcast::Sender<MailboxEvent>,
}

/// View events buffered per subscriber; one that falls further behind is told how many it
/// missed (`RecvError::Lagged`) and must reread the mailbox.
const EVENT_BUFFER: usize = 16_384;

/// No job for this long and the replica thread is idle: the store's housekeeping runs
/// ([`crate::store::Kv::idle`]), not in the middle of a burst of work.
const IDLE_AFTER: Duration = Duration::from_millis(300);

/// The replica thread has stopped (it panicked, or the node is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the replica thread has stopped")]
pub struct ActorStopped;

impl ReplicaHandle {
    /// Moves `r` to a new thread that runs jobs in order until every handle is dropped.
    pub fn spawn(mut r: Replica) -> (ReplicaHandle, std::thread::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel::<Job>();
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let publish = events.clone();
        r.keep_events(true);
        let join = std::thread::Builder::new()
            .name("replica".into())
            .spawn(move || {
                let mut idle_done = true;
                loop {
                    match rx.recv_timeout(IDLE_AFTER) {
                        Ok(job) => {
                            job(&mut r);
                            for e in r.take_events() {
                                // No subscriber is fine: nobody is watching.
                                let _ = publish.send(e);
                            }
                            idle_done = false;
                        }
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            if !idle_done {
                                r.kv().idle();
                                idle_done = true;
                            }
                        }
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                }
                // Every write was flushed before it was acknowledged; this last flush only
                // covers blobs stored without a later batch.
                if let Err(e) = r.kv().flush() {
                    tracing::error!(error = %e, "final flush failed");
                }
            })
            .expect("spawn the replica thread");
        (ReplicaHandle { tx, events }, join)
    }

    /// View events (shown, hidden, flags; local writes and peers' changes alike) committed
    /// from now on, in commit order: what IMAP IDLE and `dovetail watch` follow.
    pub fn subscribe(&self) -> broadcast::Receiver<MailboxEvent> {
        self.events.subscribe()
    }

    /// Runs `f` on the replica thread and returns its result.
    pub async fn call<R, F>(&self, f: F) -> Result<R, ActorStopped>
    where
        R: Send + 'static,
        F: FnOnce(&mut Replica) -> R + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Box::new(move |r: &mut Replica| {
                let _ = reply.send(f(r));
            }))
            .map_err(|_| ActorStopped)?;
        rx.await.map_err(|_| ActorStopped)
    }

    /// [`ReplicaHandle::call`] from a thread outside the runtime.
    pub fn call_blocking<R, F>(&self, f: F) -> Result<R, ActorStopped>
    where
        R: Send + 'static,
        F: FnOnce(&mut Replica) -> R + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Box::new(move |r: &mut Replica| {
                let _ = reply.send(f(r));
            }))
            .map_err(|_| ActorStopped)?;
        rx.blocking_recv().map_err(|_| ActorStopped)
    }
}
