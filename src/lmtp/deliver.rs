//! Delivery of one DATA block: the trace headers an LMTP server adds, then one durable
//! append per distinct target, and one reply per accepted recipient.

use super::reply::Reply;
use super::session::Envelope;
use crate::model::MailboxName;
use crate::node::daemon::FrontEndCtx;
use crate::node::{NewMessage, NodeError};

/// What the `Received:` and `Return-Path:` headers say.
#[derive(Debug)]
pub struct Trace<'a> {
    /// MAIL FROM (empty: the null sender).
    pub from: &'a str,
    /// The name the client gave in LHLO.
    pub client: &'a str,
    /// The client's address (or `local` on a unix socket).
    pub peer: &'a str,
    /// This server's name.
    pub host: &'a str,
    /// Seconds since the epoch.
    pub now: i64,
}

/// The headers prepended to every delivered message: `Return-Path:` from MAIL FROM (the
/// final delivery agent adds it, RFC 5321 §4.4) and a `Received:` line. They are the same
/// for every recipient (no `for <rcpt>` clause), so all copies share one stored blob.
pub fn trace_headers(t: &Trace<'_>) -> Vec<u8> {
    // The LHLO name and the address are client-controlled: keep only printable ASCII
    // without parentheses so the header stays one well-formed field.
    let clean = |s: &str| -> String {
        s.chars()
            .filter(|c| c.is_ascii_graphic() && !"()".contains(*c))
            .take(255)
            .collect()
    };
    format!(
        "Return-Path: <{}>\r\nReceived: from {} ({})\r\n\tby {} (dovetail) with LMTP;\r\n\t{}\r\n",
        clean(t.from),
        clean(t.client),
        clean(t.peer),
        clean(t.host),
        rfc5322_date(t.now)
    )
    .into_bytes()
}

/// `Mon, 30 Nov 2026 17:17:48 +0000` for seconds since the epoch (UTC).
pub fn rfc5322_date(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {} {} {} {:02}:{:02}:{:02} +0000",
        WD[days.rem_euclid(7) as usize],
        day,
        MON[(month - 1) as usize],
        year,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Delivers `message` (trace headers included) to every recipient of `env`: one durable
/// append per distinct target, then one reply per recipient in RCPT order (250 only once
/// that copy is durable).
pub async fn deliver(
    ctx: &FrontEndCtx,
    env: &Envelope,
    message: Vec<u8>,
    now: i64,
    limit: u64,
) -> Vec<Reply> {
    // Per target: the UID of its copy, or the refusal.
    let mut done: Vec<(super::recipient::Target, Result<u32, Reply>)> = Vec::new();
    let mut replies = Vec::with_capacity(env.rcpts.len());
    for rc in &env.rcpts {
        // The same target named twice (alias and address) gets one copy.
        if let Some((_, r)) = done.iter().find(|(t, _)| t == &rc.target) {
            replies.push(match r {
                Ok(uid) => Reply::delivered(&rc.address, *uid),
                Err(refused) => refused.clone(),
            });
            continue;
        }
        let (account, wanted) = (rc.target.account.clone(), rc.target.mailbox.clone());
        let msg = NewMessage {
            name: format!("LMTP message for <{}>", rc.address),
            bytes: message.clone(),
            flags: Default::default(),
            internal_date: now,
        };
        let res = ctx
            .replica
            .call(move |r| {
                // A folder deleted since RCPT: the message goes to INBOX instead.
                let mut mailbox = wanted;
                if !mailbox.is_inbox()
                    && !r
                        .status(&account)?
                        .iter()
                        .any(|s| s.name == mailbox.as_str())
                {
                    mailbox = MailboxName::inbox();
                }
                r.append(&account, &mailbox, vec![msg], now)
            })
            .await;
        let outcome = match res {
            Ok(Ok(v)) => {
                let _ = ctx.changed.send(());
                let uid = v.first().map_or(0, |(u, _)| u.get());
                tracing::info!(rcpt = %rc.address, account = %rc.target.account, uid, "LMTP delivered");
                Ok(uid)
            }
            Ok(Err(NodeError::TooLarge { .. })) => Err(Reply::too_large(limit)),
            Ok(Err(NodeError::UnknownAccount(_))) => Err(Reply::unknown_user(&rc.address)),
            Ok(Err(NodeError::NotAMessage { why, .. })) => Err(Reply::not_a_message(&why)),
            Ok(Err(e)) => {
                tracing::error!(rcpt = %rc.address, error = %e, "LMTP delivery failed");
                Err(Reply::temporary("storage error"))
            }
            Err(e) => Err(Reply::temporary(&e.to_string())),
        };
        replies.push(match &outcome {
            Ok(uid) => Reply::delivered(&rc.address, *uid),
            Err(refused) => refused.clone(),
        });
        done.push((rc.target.clone(), outcome));
    }
    replies
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_796_059_068),
            "Mon, 30 Nov 2026 17:17:48 +0000"
        );
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
    }

    #[test]
    fn trace_is_two_clean_fields() {
        let h = trace_headers(&Trace {
            from: "a@b",
            client: "evil\r\nX-Injected: 1 (x)",
            peer: "127.0.0.1:5",
            host: "h",
            now: 0,
        });
        let h = String::from_utf8(h).unwrap();
        assert!(h.starts_with(
            "Return-Path: <a@b>\r\nReceived: from evilX-Injected:1x (127.0.0.1:5)\r\n"
        ));
        assert!(h.ends_with("\tThu, 1 Jan 1970 00:00:00 +0000\r\n"));
    }
}
