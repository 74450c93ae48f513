//! Front ends a running node serves beside its network (IMAP today), built by the layers
//! above node, which node does not know.

use super::super::actor::ReplicaHandle;
use std::future::Future;
use tokio::sync::mpsc;

/// A front end (e.g. IMAP) that a node runs beside its network: given the replica and a
/// channel on which to report its writes (so the node announces them), it serves until its
/// future is dropped at shutdown. Built by the layer above, which node does not know.
#[derive(Clone)]
pub struct FrontEnd(
    #[allow(clippy::type_complexity)]
    pub std::sync::Arc<
        dyn Fn(
                ReplicaHandle,
                mpsc::UnboundedSender<()>,
            ) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>>
            + Send
            + Sync,
    >,
);

impl std::fmt::Debug for FrontEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FrontEnd")
    }
}
