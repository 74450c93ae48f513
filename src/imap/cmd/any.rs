//! Commands valid in every state: CAPABILITY, LOGOUT, ID; and ENABLE.

use crate::imap::session::{Reply, Session, State};
use imap_codec::imap_types::auth::AuthMechanism;
use imap_codec::imap_types::core::{IString, NString, Vec1};
use imap_codec::imap_types::extensions::enable::CapabilityEnable;
use imap_codec::imap_types::response::{Capability, Data, Status};

/// What this server supports now. Logins are offered where plaintext passwords are allowed
/// (TLS, loopback, or `--imap-allow-plaintext-login`); elsewhere LOGINDISABLED tells
/// clients not to try (RFC 3501 6.2.3). STARTTLS is offered before TLS only.
pub fn capabilities(s: &Session) -> Vec1<Capability<'static>> {
    let mut c = vec![
        Capability::Imap4Rev1,
        Capability::LiteralPlus,
        Capability::Idle,
        Capability::UidPlus,
        Capability::Move,
        Capability::Unselect,
        Capability::Enable,
        Capability::Namespace,
        Capability::Id,
        Capability::CondStore,
        Capability::Binary,
        Capability::QResync,
    ];
    if s.ctx.plaintext_ok {
        c.push(Capability::Auth(AuthMechanism::Plain));
    } else {
        c.push(Capability::LoginDisabled);
    }
    if s.ctx.starttls {
        c.push(Capability::StartTls);
    }
    Vec1::try_from(c).expect("not empty")
}

pub fn capability(s: &mut Session) -> Reply {
    let c = capabilities(s);
    s.data(Data::Capability(c));
    Reply::ok("CAPABILITY completed")
}

pub fn logout(s: &mut Session) -> Reply {
    s.out.push(crate::imap::session::Out::Response(
        imap_codec::imap_types::response::Response::Status(
            Status::bye(None, "dovetail logging out").expect("valid text"),
        ),
    ));
    s.state = State::Logout;
    Reply::ok("LOGOUT completed")
}

/// ID (RFC 2971): the server's name; what the client says about itself is only logged.
pub fn id(s: &mut Session) -> Reply {
    let pair = |k: &'static str, v: &'static str| {
        (
            IString::try_from(k).expect("quoted"),
            NString(Some(IString::try_from(v).expect("quoted"))),
        )
    };
    s.data(Data::Id {
        parameters: Some(vec![
            pair("name", "dovetail"),
            pair("version", env!("CARGO_PKG_VERSION")),
        ]),
    });
    Reply::ok("ID completed")
}

/// ENABLE (RFC 5161): CONDSTORE and QRESYNC (which implies CONDSTORE, RFC 7162 3.2.3) can
/// be enabled; the others are not supported. ENABLED lists what was asked and is on.
pub fn enable(s: &mut Session, asked: Vec1<CapabilityEnable<'static>>) -> Reply {
    let mut on = vec![];
    for c in asked.into_inner() {
        match &c {
            CapabilityEnable::CondStore => s.condstore = true,
            other if other.to_string().eq_ignore_ascii_case("QRESYNC") => {
                s.condstore = true;
                s.qresync = true;
            }
            _ => continue,
        }
        if !on.contains(&c) {
            on.push(c);
        }
    }
    s.data(Data::Enabled { capabilities: on });
    Reply::ok("ENABLE completed")
}
