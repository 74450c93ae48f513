//! Which accounts a node replicates (`dovetail node --replicate-accounts PATTERN`): glob
//! patterns over account names, for users split over sites. A node refuses the documents
//! of other accounts from its peers ([`super::Replica::accepts_doc`]), and since its
//! summary then holds only matching accounts, its peers offer it nothing else.

/// A set of account-name globs; empty matches every account.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountFilter {
    patterns: Vec<String>,
}

impl AccountFilter {
    /// A filter matching the accounts any of `patterns` matches (`*`: any run of
    /// characters, `?`: one character, anything else itself); no pattern matches all.
    pub fn new(patterns: Vec<String>) -> AccountFilter {
        AccountFilter { patterns }
    }

    /// Whether every account passes.
    pub fn is_all(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether this node replicates `account`.
    pub fn matches(&self, account: &str) -> bool {
        self.is_all() || self.patterns.iter().any(|p| glob(p, account))
    }
}

/// Glob match of `name` against `pat`, by backtracking to the last `*` (linear in
/// practice, never exponential).
fn glob(pat: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pat.chars().collect(), name.chars().collect());
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some((i, j));
            i += 1;
        } else if let Some((si, sj)) = star {
            // Let the last `*` take one more character and try again.
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("a*", "alice"));
        assert!(glob("a*", "a"));
        assert!(!glob("a*", "bob"));
        assert!(glob("*@example.org", "alice@example.org"));
        assert!(!glob("*@example.org", "alice@example.com"));
        assert!(glob("?ob", "bob"));
        assert!(!glob("?ob", "boob"));
        assert!(glob("a*c*e", "abcde"));
        assert!(glob("bob", "bob") && !glob("bob", "bobby"));
        let f = AccountFilter::new(vec!["a*".into(), "carol".into()]);
        assert!(f.matches("alice") && f.matches("carol") && !f.matches("bob"));
        assert!(AccountFilter::default().matches("anyone"));
    }
}
