//! Front ends a running node serves beside its network (IMAP today), built by the layers
//! above node, which node does not know.

use super::super::actor::ReplicaHandle;
use std::future::Future;
use tokio::sync::mpsc;

/// A front end (e.g. IMAP) that a node runs beside its network: given the replica and a
/// channel on which to report its writes (so the node announces them), it serves until its
/// future is dropped at shutdown.
#[derive(Clone)]
pub struct FrontEnd(pub std::sync::Arc<FrontEndFn>);

/// What a [`FrontEnd`] runs: the replica and the write channel in, the serving future out.
pub type FrontEndFn = dyn Fn(ReplicaHandle, mpsc::UnboundedSender<()>) -> ServeFuture + Send + Sync;

/// The future a front end serves in (dropped at shutdown).
pub type ServeFuture = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

impl std::fmt::Debug for FrontEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FrontEnd")
    }
}
