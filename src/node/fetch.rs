//! Reading a message back: the raw bytes of the blob a visible UID shows.

use super::{NodeError, Replica};
use crate::model::{AccountName, MailboxName, Uid};

impl Replica {
    /// The raw message (exact bytes of its blob) shown at `uid` in a mailbox. An unknown
    /// account, mailbox or UID (not shown: never claimed, dead, homeless or expunged) is an
    /// error, as is a shown row whose blob is missing (the view must never show one).
    pub fn fetch(
        &mut self,
        a: &AccountName,
        name: &MailboxName,
        uid: Uid,
    ) -> Result<Vec<u8>, NodeError> {
        let kv = std::sync::Arc::clone(&self.kv);
        let tx = crate::store::Tx::new(kv.as_ref());
        let e = self.find(&tx, a, name)?;
        let row = crate::store::tables::row(kv.as_ref(), &e.id, uid)?.ok_or_else(|| {
            NodeError::UnknownUid {
                mailbox: name.to_string(),
                uid: uid.get(),
            }
        })?;
        self.blob(&row.blob)?
            .ok_or_else(|| NodeError::MissingBlob(row.blob.to_hex()))
    }
}
