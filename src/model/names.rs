use super::ModelError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A mailbox name: `/`-separated hierarchy, UTF-8, no empty levels, no control
/// characters, at most 255 bytes. `INBOX` is case-insensitive and stored as `INBOX`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MailboxName(String);

impl MailboxName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn inbox() -> MailboxName {
        MailboxName("INBOX".into())
    }
    pub fn is_inbox(&self) -> bool {
        self.0 == "INBOX"
    }
}

impl fmt::Display for MailboxName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<&str> for MailboxName {
    type Error = ModelError;
    fn try_from(s: &str) -> Result<Self, ModelError> {
        let err = |why| ModelError::MailboxName(s.to_string(), why);
        if s.is_empty() {
            return Err(err("empty"));
        }
        if s.len() > 255 {
            return Err(err("longer than 255 bytes"));
        }
        if s.chars().any(|c| c.is_control()) {
            return Err(err("control characters"));
        }
        if s.split('/').any(|p| p.is_empty()) {
            return Err(err("empty hierarchy level"));
        }
        if s.contains('*') || s.contains('%') {
            return Err(err("wildcards * and % are not allowed"));
        }
        if s.eq_ignore_ascii_case("INBOX") {
            return Ok(MailboxName::inbox());
        }
        Ok(MailboxName(s.to_string()))
    }
}

/// An account (a mail user): letters, digits and `. _ - @ +`, 1..=128 bytes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AccountName(String);

impl AccountName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<&str> for AccountName {
    type Error = ModelError;
    fn try_from(s: &str) -> Result<Self, ModelError> {
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-@+".contains(c));
        if ok {
            Ok(AccountName(s.to_string()))
        } else {
            Err(ModelError::AccountName(s.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_validate() {
        assert!(MailboxName::try_from("inbox").unwrap().is_inbox());
        assert!(MailboxName::try_from("Work/2026").is_ok());
        for bad in ["", "a//b", "/a", "a\nb", "a*"] {
            assert!(MailboxName::try_from(bad).is_err(), "{bad:?} accepted");
        }
        assert!(AccountName::try_from("alice@example.org").is_ok());
        assert!(AccountName::try_from("al ice").is_err());
    }
}
