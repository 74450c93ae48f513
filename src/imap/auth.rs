//! Passwords: argon2 hashes (PHC strings) stored in the account document, checked off the
//! async runtime; SASL PLAIN decoding; the delay after a failed attempt.

use super::ImapError;
use argon2::password_hash::SaltString;
use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Hashes a password with argon2id (the crate's defaults: 19 MiB, 2 passes) and a random salt.
pub fn hash_password(password: &str) -> Result<String, ImapError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ImapError::Hash(e.to_string()))
}

/// Whether `password` matches a stored PHC hash (a malformed hash matches nothing).
pub fn verify_password(password: &[u8], hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(h) => Argon2::default().verify_password(password, &h).is_ok(),
        Err(_) => false,
    }
}

/// The delay before answering the `n`-th failed login of a connection (n ≥ 1): 1 s, then
/// doubling up to 8 s, so guessing is slow even on one connection.
pub fn failure_delay(n: u32) -> Duration {
    Duration::from_secs(1 << n.saturating_sub(1).min(3))
}

/// Failed logins per client address, shared by every connection of a node: a client that
/// opens a new connection for each guess still waits longer and longer.
#[derive(Clone, Default)]
pub struct Throttle(Arc<Mutex<HashMap<IpAddr, Vec<Instant>>>>);

/// How long a failed login counts against its address.
const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Addresses remembered at most (a flood of addresses must not grow memory without bound).
const MAX_ADDRESSES: usize = 65_536;

impl Throttle {
    /// Records a failed login from `ip`; returns its failures in the window.
    pub fn failed(&self, ip: IpAddr) -> u32 {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= MAX_ADDRESSES {
            m.retain(|_, v| v.last().is_some_and(|t| t.elapsed() < WINDOW));
            if m.len() >= MAX_ADDRESSES {
                m.clear();
            }
        }
        let v = m.entry(ip).or_default();
        v.retain(|t| t.elapsed() < WINDOW);
        // Only the count matters past the cap of the delay.
        if v.len() < 64 {
            v.push(Instant::now());
        }
        v.len() as u32
    }
}

/// Failed logins after which a connection is closed.
pub const MAX_FAILURES: u32 = 5;

/// Splits a SASL PLAIN message (`authzid NUL authcid NUL password`, RFC 4616). An authzid
/// other than empty or the authcid is refused (no proxy logins).
pub fn parse_plain(msg: &[u8]) -> Option<(String, Vec<u8>)> {
    let mut it = msg.splitn(3, |&b| b == 0);
    let (authz, authc, pw) = (it.next()?, it.next()?, it.next()?);
    if !authz.is_empty() && authz != authc {
        return None;
    }
    Some((String::from_utf8(authc.to_vec()).ok()?, pw.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_only_their_password() {
        let h = hash_password("s3cret").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(b"s3cret", &h));
        assert!(!verify_password(b"s3cre", &h));
        assert!(!verify_password(b"s3cret", "not a hash"));
    }

    #[test]
    fn plain_messages_split() {
        assert_eq!(
            parse_plain(b"\0alice\0pw"),
            Some(("alice".into(), b"pw".to_vec()))
        );
        assert_eq!(
            parse_plain(b"alice\0alice\0pw"),
            Some(("alice".into(), b"pw".to_vec()))
        );
        assert_eq!(parse_plain(b"bob\0alice\0pw"), None);
        assert_eq!(parse_plain(b"alice"), None);
        assert_eq!(failure_delay(1), Duration::from_secs(1));
        assert_eq!(failure_delay(9), Duration::from_secs(8));
    }

    #[test]
    fn failures_count_per_address() {
        let t = Throttle::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(t.failed(a), 1);
        assert_eq!(t.clone().failed(a), 2, "shared by clones (connections)");
        assert_eq!(t.failed(b), 1);
    }
}
