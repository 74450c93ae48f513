//! LOGIN and AUTHENTICATE PLAIN (the SASL exchange itself is driven by the server loop).
//! The login is the account name; the password is checked against the argon2 hash in the
//! account document. A failure is answered after a delay that doubles with each failure
//! from the client's address (on any connection); after [`auth::MAX_FAILURES`] on one
//! connection it is closed.

use crate::imap::auth;
use crate::imap::session::{Reply, Session, State};
use crate::model::AccountName;
use imap_codec::imap_types::response::{Code, Response, Status};

/// The refusal of a login without TLS from a non-loopback address (RFC 5530).
pub fn privacy_required() -> Reply {
    Reply::no("plaintext login is disabled here: use TLS (imaps, or STARTTLS first)")
        .other("PRIVACYREQUIRED")
}

/// Checks `user`/`password` and, if they match, moves to the authenticated state.
pub async fn login(s: &mut Session, user: &str, password: &[u8]) -> Reply {
    if !s.ctx.plaintext_ok {
        return privacy_required();
    }
    let account = AccountName::try_from(user).ok();
    let hash = match &account {
        Some(a) => {
            let (a, login) = (a.clone(), user.to_string());
            match s
                .call(move |r| {
                    if r.has_account(&a)? {
                        r.password_hash(&a, &login)
                    } else {
                        Ok(None)
                    }
                })
                .await
            {
                Ok(h) => h,
                Err(r) => return r,
            }
        }
        None => None,
    };
    // argon2 takes tens of milliseconds of CPU: off the async threads.
    let pw = password.to_vec();
    let ok = match hash {
        Some(h) => tokio::task::spawn_blocking(move || auth::verify_password(&pw, &h))
            .await
            .unwrap_or(false),
        None => false,
    };
    match (ok, account) {
        (true, Some(account)) => {
            tracing::info!(%account, "IMAP login");
            s.state = State::Authenticated { account };
            s.failures = 0;
            Reply::ok("LOGIN completed").code(Code::Capability(super::any::capabilities(s)))
        }
        _ => {
            s.failures += 1;
            let from_addr = s.ctx.throttle.failed(s.ctx.peer);
            tracing::warn!(user, failures = s.failures, from_addr, peer = %s.ctx.peer, "IMAP login failed");
            tokio::time::sleep(auth::failure_delay(s.failures.max(from_addr))).await;
            if s.failures >= auth::MAX_FAILURES {
                s.out
                    .push(crate::imap::session::Out::Response(Response::Status(
                        Status::bye(None, "too many failed logins").expect("valid text"),
                    )));
                s.state = State::Logout;
            }
            Reply::no("invalid user name or password").other("AUTHENTICATIONFAILED")
        }
    }
}
