//! QRESYNC (RFC 7162 3.2): which UIDs a client must forget when it comes back with a MODSEQ,
//! for `SELECT/EXAMINE ... (QRESYNC (uidvalidity modseq [known-uids]))` and
//! `UID FETCH ... (CHANGEDSINCE m VANISHED)`. The rule is docs/design.md section 8's:
//!
//! - a MODSEQ this node issued (same issuer tag, counter not above HIGHESTMODSEQ): the
//!   UIDs the change index recorded as vanished after it: exact, and costing the changes;
//!   but if the value is below the index's vanish floor (an upgraded store), the index
//!   does not know, and the answer is the next one;
//! - any other value: every UID of the client's known-uids (without them: every UID) that
//!   is not visible here now. Nothing the client may hold is left out, so there is never a
//!   silent miss; UIDs it never knew cost it nothing (RFC 7162 allows them).

use crate::imap::modseq::Issuer;
use crate::imap::session::highest;
use crate::imap::uidset::{self, Ranges};
use crate::model::{MailboxId, Uid};
use crate::node::{NodeError, Replica};

/// What a client's MODSEQ stands for here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Since {
    /// This node's counter: changes above it are the exact answer.
    Local(u64),
    /// Not this node's value: everything counts as changed.
    Foreign,
}

impl Since {
    /// Reads a client's wire MODSEQ against the mailbox's HIGHESTMODSEQ here.
    pub fn of(issuer: Issuer, wire: u64, highest: u64) -> Since {
        match issuer.local(wire, highest) {
            Some(c) => Since::Local(c),
            None => Since::Foreign,
        }
    }

    /// Whether a row with this counter changed since (all rows do for a foreign value).
    pub fn changed(&self, modseq: u64) -> bool {
        match self {
            Since::Local(c) => modseq > *c,
            Since::Foreign => true,
        }
    }
}

/// The UIDs to send as `VANISHED (EARLIER)`: those of `scope` (the client's known-uids, or
/// the UIDs a UID FETCH names; `None`: every UID) that vanished since `since`. Runs on the
/// replica thread, so it sees the same state as the rows read in the same job; `present`
/// are the visible UIDs when that job already read them.
pub fn vanished(
    r: &mut Replica,
    id: &MailboxId,
    since: Since,
    scope: Option<&Ranges>,
    present: Option<&[Uid]>,
) -> Result<Ranges, NodeError> {
    if let Since::Local(c) = since {
        let got = crate::store::changes::since(r.kv(), id, c)?;
        if got.complete {
            let v: Vec<Uid> = got
                .vanished
                .into_iter()
                .filter(|u| scope.is_none_or(|s| uidset::contains(s, u.get())))
                .collect();
            return Ok(uidset::of_uids(&v));
        }
    }
    // Without the history: everything in scope that is not visible now. A client can
    // only know UIDs this node or another one showed: from this node, below its UIDNEXT;
    // from another node, any UID (this one may not have seen it yet).
    let ceiling = match since {
        Since::Local(_) => {
            let tx = crate::store::Tx::new(r.kv());
            let next = tx.mailbox_meta(id)?.map_or(1, |m| m.uidnext_u32());
            next.saturating_sub(1)
        }
        Since::Foreign => u32::MAX,
    };
    let all: Ranges = if ceiling > 0 {
        vec![(1, ceiling)]
    } else {
        vec![]
    };
    let scope = scope.unwrap_or(&all);
    if let Some(p) = present {
        return Ok(uidset::minus(scope, p));
    }
    let mut present = Vec::new();
    crate::store::rows_ref::each_row_ref(r.kv(), id, &mut |u, _| {
        present.push(u);
        true
    })?;
    Ok(uidset::minus(scope, &present))
}

/// [`Since::of`] on the replica thread.
pub fn since(r: &Replica, id: &MailboxId, issuer: Issuer, wire: u64) -> Result<Since, NodeError> {
    Ok(Since::of(issuer, wire, highest(r, id)?))
}
