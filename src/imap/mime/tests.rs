use super::*;
use imap_codec::imap_types::core::AString;
use imap_codec::imap_types::fetch::Part;
use std::num::NonZeroU32;

const SIMPLE: &[u8] = b"From: Alice <alice@example.org>\r\nTo: bob@example.org\r\nSubject: Hi\r\n there\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@x>\r\n\r\nHello Bob\r\nBye\r\n";

const MULTI: &[u8] = b"From: a@x\r\nSubject: multi\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"BB\"\r\n\r\npreamble\r\n--BB\r\nContent-Type: text/plain; charset=utf-8\r\n\r\npart one\r\n--BB\r\nContent-Type: message/rfc822\r\n\r\nFrom: c@y\r\nSubject: inner\r\n\r\ninner body\r\n--BB--\r\n";

fn part(p: &[u32]) -> Part {
    Part(
        Vec1::try_from(
            p.iter()
                .map(|&n| NonZeroU32::new(n).unwrap())
                .collect::<Vec<_>>(),
        )
        .unwrap(),
    )
}

#[test]
fn simple_sections() {
    let m = Mime::parse(SIMPLE);
    assert_eq!(m.section(None), SIMPLE);
    let header = m.section(Some(&Section::Header(None)));
    assert!(header.starts_with(b"From: Alice"));
    assert!(
        header.ends_with(b"<1@x>\r\n\r\n"),
        "{:?}",
        String::from_utf8_lossy(&header)
    );
    assert_eq!(
        m.section(Some(&Section::Text(None))),
        b"Hello Bob\r\nBye\r\n"
    );
    assert_eq!(
        m.section(Some(&Section::Part(part(&[1])))),
        b"Hello Bob\r\nBye\r\n"
    );
    assert!(m.section(Some(&Section::Part(part(&[2])))).is_empty());
    let names = Vec1::try_from(vec![
        AString::try_from("subject").unwrap(),
        AString::try_from("TO").unwrap(),
    ])
    .unwrap();
    assert_eq!(
        m.section(Some(&Section::HeaderFields(None, names.clone()))),
        b"To: bob@example.org\r\nSubject: Hi\r\n there\r\n\r\n"
    );
    let not = m.section(Some(&Section::HeaderFieldsNot(None, names)));
    assert!(not.starts_with(b"From: Alice"));
    assert!(!not.windows(8).any(|w| w == b"Subject:"));
    let env = m.envelope();
    assert_eq!(env.subject, nstring_opt(Some(b"Hi there")));
    assert_eq!(env.from.len(), 1);
    assert_eq!(env.sender, env.from);
    assert_eq!(env.to[0].host, nstring_opt(Some(b"example.org")));
}

#[test]
fn multipart_sections_and_structure() {
    let m = Mime::parse(MULTI);
    assert_eq!(m.section(Some(&Section::Part(part(&[1])))), b"part one");
    assert_eq!(
        m.section(Some(&Section::Mime(part(&[1])))),
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
    );
    assert_eq!(
        m.section(Some(&Section::Header(Some(part(&[2]))))),
        b"From: c@y\r\nSubject: inner\r\n\r\n"
    );
    assert_eq!(
        m.section(Some(&Section::Text(Some(part(&[2]))))),
        b"inner body"
    );
    assert_eq!(
        m.section(Some(&Section::Part(part(&[2, 1])))),
        b"inner body"
    );
    match m.body_structure(true) {
        BodyStructure::Multi { bodies, .. } => {
            assert_eq!(bodies.as_ref().len(), 2);
            assert!(matches!(
                &bodies.as_ref()[1],
                BodyStructure::Single {
                    body: Body {
                        specific: SpecificFields::Message { .. },
                        ..
                    },
                    ..
                }
            ));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn garbage_does_not_panic() {
    for raw in [
        &b""[..],
        b"\r\n",
        b"no header",
        b"a: b\r\n\r\n",
        &[0xff, 0, 1, 2],
    ] {
        let m = Mime::parse(raw);
        let _ = m.envelope();
        let _ = m.body_structure(true);
        let _ = m.section(Some(&Section::Part(part(&[3, 2, 1]))));
        let _ = m.section(Some(&Section::Header(Some(part(&[1])))));
    }
}
