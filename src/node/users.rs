//! Logins and subscriptions of an account: password hashes and subscribed names kept in the
//! account document, so they replicate with it (every node can authenticate every login of
//! the accounts it holds, and shows the same subscriptions).

use super::{NodeError, Replica};
use crate::model::AccountName;
use crate::store::Tx;
use serde::{Deserialize, Serialize};

/// A change to the logins of an account (`dovetail user add|passwd|del`). The hash is
/// opaque here: the front end that checks passwords made it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserChange {
    /// A new login: refused if it already has a password.
    Add(String),
    /// A new password for an existing login.
    Passwd(String),
    /// Removes the login.
    Del,
}

impl Replica {
    /// Applies `change` to `login` in account `a`, durably; nothing changes if it is refused.
    pub fn change_user(
        &mut self,
        a: &AccountName,
        login: &str,
        change: &UserChange,
    ) -> Result<(), NodeError> {
        self.write(|r, tx| {
            let mut acc = r.account_or_err(tx, a)?;
            let exists = acc.password(login).is_some();
            let hash = match change {
                UserChange::Add(_) if exists => {
                    return Err(NodeError::UserExists(login.to_string()))
                }
                UserChange::Passwd(_) | UserChange::Del if !exists => {
                    return Err(NodeError::UnknownUser(login.to_string()))
                }
                UserChange::Add(h) | UserChange::Passwd(h) => Some(h.as_str()),
                UserChange::Del => None,
            };
            acc.set_password(login, hash)?;
            r.put_account(tx, a, acc);
            Ok(())
        })
    }

    /// The password hash of `login` in account `a` (`None`: no such account or no password).
    pub fn password_hash(
        &mut self,
        a: &AccountName,
        login: &str,
    ) -> Result<Option<String>, NodeError> {
        let kv = std::sync::Arc::clone(&self.kv);
        let tx = Tx::new(kv.as_ref());
        Ok(self.account(&tx, a)?.and_then(|acc| acc.password(login)))
    }

    /// Subscribes to or unsubscribes from a mailbox name, durably.
    pub fn subscribe(&mut self, a: &AccountName, name: &str, on: bool) -> Result<(), NodeError> {
        self.write(|r, tx| {
            let mut acc = r.account_or_err(tx, a)?;
            acc.subscribe(name, on)?;
            r.put_account(tx, a, acc);
            Ok(())
        })
    }

    /// The subscribed names of an account, sorted.
    pub fn subscriptions(&mut self, a: &AccountName) -> Result<Vec<String>, NodeError> {
        let kv = std::sync::Arc::clone(&self.kv);
        let tx = Tx::new(kv.as_ref());
        Ok(self.account_or_err(&tx, a)?.subscriptions())
    }
}
