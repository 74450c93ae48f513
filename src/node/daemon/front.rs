//! Front ends a running node serves (LMTP, and later IMAP): the daemon starts each with a
//! handle on the replica, a way to tell the node it wrote, and a shutdown signal, without
//! knowing what the front end is (they sit above `node` in the layer map).

use super::super::actor::ReplicaHandle;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// What a front end gets from the node that runs it.
#[derive(Clone)]
pub struct FrontEndCtx {
    /// The replica thread: every read and write goes through it.
    pub replica: ReplicaHandle,
    /// Send `()` after each write, so that the node announces the changed documents to its
    /// peers at once (else they learn of them at the next anti-entropy round).
    pub changed: mpsc::UnboundedSender<()>,
    /// Turns true when the node shuts down: stop accepting, finish or drop what is open.
    pub shutdown: watch::Receiver<bool>,
    /// The node's peers, sync progress and metrics (front ends count their sessions in
    /// `monitor.metrics()`).
    pub monitor: super::Monitor,
}

type Start = dyn Fn(FrontEndCtx) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync;

/// A front end: a function that, given the node's context, returns the future serving it
/// (started once the replica and the network run; ended at shutdown). Its listeners are
/// bound by whoever builds it, before the node starts, so a bad address fails at start.
#[derive(Clone)]
pub struct FrontEnd {
    name: &'static str,
    start: Arc<Start>,
}

impl FrontEnd {
    /// A front end called `name` (for logs) served by `start`.
    pub fn new<F, Fut>(name: &'static str, start: F) -> FrontEnd
    where
        F: Fn(FrontEndCtx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        FrontEnd {
            name,
            start: Arc::new(move |ctx| Box::pin(start(ctx))),
        }
    }

    /// The front end's name.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl fmt::Debug for FrontEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FrontEnd({})", self.name)
    }
}

/// How long a front end may take to finish its open sessions at shutdown (a delivery being
/// written completes on the replica thread either way; only its reply may be lost).
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The running front ends of a node.
pub(super) struct Running {
    stop: watch::Sender<bool>,
    tasks: Vec<(&'static str, tokio::task::JoinHandle<()>)>,
}

impl Running {
    /// Starts every front end.
    pub(super) fn start(
        fronts: &[FrontEnd],
        replica: &ReplicaHandle,
        changed: &mpsc::UnboundedSender<()>,
        monitor: &super::Monitor,
    ) -> Running {
        let (stop, shutdown) = watch::channel(false);
        let tasks = fronts
            .iter()
            .map(|f| {
                let ctx = FrontEndCtx {
                    replica: replica.clone(),
                    changed: changed.clone(),
                    shutdown: shutdown.clone(),
                    monitor: monitor.clone(),
                };
                (f.name, tokio::spawn((f.start)(ctx)))
            })
            .collect();
        Running { stop, tasks }
    }

    /// Signals shutdown and waits (at most [`STOP_GRACE`]) for each front end to end.
    pub(super) async fn stop(self) {
        let _ = self.stop.send(true);
        for (name, mut t) in self.tasks {
            if tokio::time::timeout(STOP_GRACE, &mut t).await.is_err() {
                tracing::warn!(front_end = name, "did not stop in time; aborted");
                t.abort();
            }
        }
    }
}
