use super::ModelError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

const SYSTEM: [&str; 5] = ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"];

/// A storable message flag: one of the five settable system flags (canonical case) or a
/// keyword atom such as `$Work` (RFC 3501 `flag-keyword`). `\Recent` is session state, not
/// stored, so it is rejected here.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Flag(String);

impl Flag {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// A flag read back from the store in place (as deserializing an owned one does): the
    /// store holds only flags that were checked on their way in.
    pub(crate) fn stored(s: &str) -> Flag {
        Flag(s.to_string())
    }
    /// `\Seen`, used for the unseen count.
    pub fn seen() -> Flag {
        Flag(SYSTEM[0].to_string())
    }
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_atom_char(c: char) -> bool {
    c.is_ascii_graphic() && !"(){%*\"\\]".contains(c)
}

impl TryFrom<&str> for Flag {
    type Error = ModelError;
    fn try_from(s: &str) -> Result<Self, ModelError> {
        if let Some(rest) = s.strip_prefix('\\') {
            return SYSTEM
                .iter()
                .find(|f| f[1..].eq_ignore_ascii_case(rest))
                .map(|f| Flag(f.to_string()))
                .ok_or_else(|| ModelError::Flag(s.to_string()));
        }
        if !s.is_empty() && s.len() <= 255 && s.chars().all(is_atom_char) && !s.contains('/') {
            Ok(Flag(s.to_string()))
        } else {
            Err(ModelError::Flag(s.to_string()))
        }
    }
}

/// A set of flags, kept sorted so that its encoding is canonical.
pub type FlagSet = BTreeSet<Flag>;

impl Flag {
    /// Parses a space-separated flag list such as `\Seen $Work` (parentheses allowed).
    pub fn parse_list(s: &str) -> Result<FlagSet, ModelError> {
        s.trim()
            .trim_start_matches('(')
            .trim_end_matches(')')
            .split_whitespace()
            .map(Flag::try_from)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_validate() {
        assert_eq!(Flag::try_from("\\seen").unwrap().as_str(), "\\Seen");
        assert!(Flag::try_from("$Work").is_ok());
        for bad in ["\\Recent", "\\Bogus", "", "a b", "x(", "a\"b", "a/b"] {
            assert!(Flag::try_from(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(Flag::parse_list("(\\Seen $Work)").unwrap().len(), 2);
    }
}
