use super::ModelError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

macro_rules! hex_id {
    ($(#[$doc:meta])* $name:ident, $len:expr, $kind:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }
            /// Builds the id from exactly the right number of bytes.
            pub fn from_slice(b: &[u8]) -> Option<Self> {
                b.try_into().ok().map($name)
            }
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), &hex::encode(self.0)[..8])
            }
        }

        impl TryFrom<&str> for $name {
            type Error = ModelError;
            fn try_from(s: &str) -> Result<Self, ModelError> {
                let err = || ModelError::Hex { kind: $kind, value: s.to_string(), len: 2 * $len };
                let v = hex::decode(s).map_err(|_| err())?;
                Self::from_slice(&v).ok_or_else(err)
            }
        }
    };
}

hex_id!(
    /// A message: 128 bits minted by the node that accepted the write. One GUID is one
    /// message in one mailbox; COPY mints a new one.
    Guid, 16, "GUID"
);
hex_id!(
    /// A message body: the sha256 of its raw RFC 5322 bytes.
    BlobId, 32, "blob id"
);
hex_id!(
    /// A mailbox incarnation: derived from (account, creation name, UIDVALIDITY) so that
    /// concurrent creates of one name from the same state on two nodes name one mailbox.
    MailboxId, 16, "mailbox id"
);
hex_id!(
    /// A node: its ed25519 public key (the libp2p identity). Ties are broken by its bytes.
    NodeId, 32, "node id"
);

impl BlobId {
    /// The content address of `bytes`.
    pub fn of(bytes: &[u8]) -> BlobId {
        BlobId(Sha256::digest(bytes).into())
    }
}

impl Guid {
    /// A fresh GUID: 64 bits of this process's clock (microseconds since the epoch, made
    /// strictly increasing), then 64 random bits. Unique as a random GUID is (two nodes
    /// minting in the same microsecond still differ in 64 random bits), and ordered by time:
    /// the records keyed by GUID (message records, in sled's B-tree) are then written near
    /// the end of their table instead of at random places, which made every append rewrite
    /// a random leaf of a large tree.
    pub fn mint() -> Guid {
        use std::sync::atomic::{AtomicU64, Ordering};
        static LAST: AtomicU64 = AtomicU64::new(0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let mut prev = LAST.load(Ordering::Relaxed);
        let t = loop {
            let t = now.max(prev + 1);
            match LAST.compare_exchange_weak(prev, t, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break t,
                Err(p) => prev = p,
            }
        };
        let mut g = [0u8; 16];
        g[..8].copy_from_slice(&t.to_be_bytes());
        g[8..].copy_from_slice(&rand::random::<[u8; 8]>());
        Guid(g)
    }
}

impl MailboxId {
    /// The id of the mailbox created under `name` in `account` with UIDVALIDITY `uv`.
    pub fn derive(account: &str, name: &str, uv: u32) -> MailboxId {
        let mut h = Sha256::new();
        h.update(b"dovetail-mailbox\0");
        h.update(account.as_bytes());
        h.update([0]);
        h.update(name.as_bytes());
        h.update([0]);
        h.update(uv.to_be_bytes());
        let d: [u8; 32] = h.finalize().into();
        MailboxId(d[..16].try_into().expect("16 bytes"))
    }
}

/// An operation id: (Lamport counter, node). Total order: counter first, then node bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OpId {
    pub counter: u64,
    pub node: NodeId,
}
