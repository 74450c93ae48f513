//! The replica actor: one thread owns the [`Replica`] (its storage calls block, and one
//! writer at a time is what its transactions assume); async tasks send it jobs and await
//! the answers.

use super::Replica;
use tokio::sync::{mpsc, oneshot};

type Job = Box<dyn FnOnce(&mut Replica) + Send>;

/// A cloneable handle on the replica thread.
#[derive(Clone)]
pub struct ReplicaHandle {
    tx: mpsc::UnboundedSender<Job>,
}

/// The replica thread has stopped (it panicked, or the node is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the replica thread has stopped")]
pub struct ActorStopped;

impl ReplicaHandle {
    /// Moves `r` to a new thread that runs jobs in order until every handle is dropped.
    pub fn spawn(mut r: Replica) -> (ReplicaHandle, std::thread::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        let join = std::thread::Builder::new()
            .name("replica".into())
            .spawn(move || {
                while let Some(job) = rx.blocking_recv() {
                    job(&mut r);
                }
                // Every write was flushed before it was acknowledged; this last flush only
                // covers blobs stored without a later batch.
                if let Err(e) = r.kv().flush() {
                    tracing::error!(error = %e, "final flush failed");
                }
            })
            .expect("spawn the replica thread");
        (ReplicaHandle { tx }, join)
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
