//! A message's MIME structure for FETCH and SEARCH: ENVELOPE, BODYSTRUCTURE and body
//! sections, on mail-parser. Sections are cut from the raw bytes by offset, never
//! re-encoded, so `BODY[]` and its parts are byte-identical to what was appended.

use super::convert::{istring, nstring_opt};
use imap_codec::imap_types::body::{
    BasicFields, Body, BodyStructure, Disposition, Language, Location, MultiPartExtensionData,
    SinglePartExtensionData, SpecificFields,
};
use imap_codec::imap_types::core::{IString, NString, Vec1};
use imap_codec::imap_types::envelope::{Address, Envelope};
use imap_codec::imap_types::fetch::Section;
use mail_parser::{HeaderValue, Message, MessageParser, MimeHeaders, PartType};

/// Nesting depth past which encapsulated messages are shown as opaque parts.
const MAX_DEPTH: usize = 8;

/// One MIME part, with byte offsets into the whole message.
struct Node {
    /// Start of its header block, start of its body, end of its body.
    start: usize,
    body: usize,
    end: usize,
    ctype: String,
    subtype: String,
    params: Vec<(String, String)>,
    id: Option<String>,
    desc: Option<String>,
    cte: String,
    disposition: Option<(String, Vec<(String, String)>)>,
    kind: Kind,
    /// The envelope, for a message (the root or an encapsulated one).
    envelope: Option<Envelope<'static>>,
}

enum Kind {
    Leaf,
    Multi(Vec<Node>),
    /// message/rfc822: the encapsulated message's root.
    Message(Box<Node>),
}

/// A parsed message.
pub struct Mime<'a> {
    raw: &'a [u8],
    root: Node,
}

impl<'a> Mime<'a> {
    /// Parses `raw` (a message that parses as nothing becomes one opaque text part).
    pub fn parse(raw: &'a [u8]) -> Mime<'a> {
        let root = match MessageParser::default().parse(raw) {
            Some(m) if !m.parts.is_empty() => build(raw, &m, 0, 0, 0),
            _ => opaque(raw, 0, raw.len()),
        };
        Mime { raw, root }
    }

    /// The message's ENVELOPE.
    pub fn envelope(&self) -> Envelope<'static> {
        self.root.envelope.clone().unwrap_or_else(empty_envelope)
    }

    /// BODYSTRUCTURE (`extended`) or BODY.
    pub fn body_structure(&self, extended: bool) -> BodyStructure<'static> {
        structure(self.raw, &self.root, extended)
    }

    /// The bytes of a section (`None`: the whole message). A section naming a part that
    /// does not exist is empty, as in Dovecot.
    pub fn section(&self, s: Option<&Section<'_>>) -> Vec<u8> {
        let raw = self.raw;
        let Some(s) = s else {
            return raw.to_vec();
        };
        let msg_of = |p: Option<&imap_codec::imap_types::fetch::Part>| -> Option<&Node> {
            match p {
                None => Some(&self.root),
                Some(p) => match &self.find(p.0.as_ref())?.kind {
                    Kind::Message(inner) => Some(inner),
                    _ => None,
                },
            }
        };
        let out = match s {
            Section::Part(p) => self.find(p.0.as_ref()).map(|n| raw[n.body..n.end].to_vec()),
            Section::Header(p) => msg_of(p.as_ref()).map(|n| raw[n.start..n.body].to_vec()),
            Section::Text(p) => msg_of(p.as_ref()).map(|n| raw[n.body..n.end].to_vec()),
            Section::Mime(p) => self
                .find(p.0.as_ref())
                .map(|n| raw[n.start..n.body].to_vec()),
            Section::HeaderFields(p, names) => msg_of(p.as_ref())
                .map(|n| header_fields(&raw[n.start..n.body], names.as_ref(), false)),
            Section::HeaderFieldsNot(p, names) => msg_of(p.as_ref())
                .map(|n| header_fields(&raw[n.start..n.body], names.as_ref(), true)),
        };
        out.unwrap_or_default()
    }

    /// BINARY[path] (RFC 3516): the part's content with its transfer encoding undone (the
    /// whole message for an empty path; a multipart or message part as it is). A part that
    /// does not exist is empty, as for BODY.
    pub fn binary(&self, path: &[std::num::NonZeroU32]) -> Result<Vec<u8>, super::cte::UnknownCte> {
        if path.is_empty() {
            return Ok(self.raw.to_vec());
        }
        match self.find(path) {
            Some(n) if matches!(n.kind, Kind::Leaf) => {
                super::cte::decode(&n.cte, &self.raw[n.body..n.end])
            }
            Some(n) => Ok(self.raw[n.body..n.end].to_vec()),
            None => Ok(Vec::new()),
        }
    }

    /// The part at a part number path (RFC 3501 6.4.5): numbers index the parts of a
    /// multipart; a non-multipart message has one part, its body; after a message/rfc822
    /// part, numbers index the encapsulated message's parts.
    fn find(&self, path: &[std::num::NonZeroU32]) -> Option<&Node> {
        let mut cur = &self.root;
        for (i, n) in path.iter().enumerate() {
            let n = n.get() as usize;
            let container = match (&cur.kind, i) {
                (Kind::Message(inner), _) if i > 0 => inner.as_ref(),
                _ => cur,
            };
            cur = match &container.kind {
                Kind::Multi(children) => children.get(n - 1)?,
                _ if n == 1 => container,
                _ => return None,
            };
        }
        Some(cur)
    }

    /// The message's header fields: (name, unfolded value).
    pub fn header_values(&self) -> Vec<(String, String)> {
        fields(&self.raw[self.root.start..self.root.body])
            .into_iter()
            .map(|f| (f.name, unfold(f.value)))
            .collect()
    }

    /// The message body (everything after the header block).
    pub fn body_bytes(&self) -> &[u8] {
        &self.raw[self.root.body..self.root.end]
    }

    /// The header block, with its terminating empty line.
    pub fn header_bytes(&self) -> &[u8] {
        &self.raw[self.root.start..self.root.body]
    }
}

/// The decoded text of the message's text parts and its decoded subject and addresses
/// (what SEARCH BODY/SUBJECT/FROM match besides the raw bytes).
pub fn decoded_texts(raw: &[u8]) -> (Vec<String>, Option<String>) {
    match MessageParser::default().parse(raw) {
        Some(m) => {
            let bodies = (0..m.text_body_count())
                .filter_map(|i| m.body_text(i).map(|t| t.into_owned()))
                .collect();
            (bodies, m.subject().map(str::to_string))
        }
        None => (vec![], None),
    }
}

fn opaque(_raw: &[u8], start: usize, end: usize) -> Node {
    Node {
        start,
        body: start,
        end,
        ctype: "text".into(),
        subtype: "plain".into(),
        params: vec![],
        id: None,
        desc: None,
        cte: "7bit".into(),
        disposition: None,
        kind: Kind::Leaf,
        envelope: None,
    }
}

/// Builds the node of part `idx` of `m`, whose offsets count from `base` in `raw`.
fn build(raw: &[u8], m: &Message<'_>, idx: usize, base: usize, depth: usize) -> Node {
    let p = &m.parts[idx];
    let clamp = |o: u32| (base + o as usize).min(raw.len());
    let (start, body, end) = (
        clamp(p.offset_header),
        clamp(p.offset_body),
        clamp(p.offset_end),
    );
    let (end, body) = (end.max(start), body.clamp(start, end.max(start)));
    let ct = p.content_type();
    let (ctype, subtype) = match ct {
        Some(c) => (
            c.ctype().to_ascii_lowercase(),
            c.subtype()
                .map(|s| s.to_ascii_lowercase())
                .unwrap_or_else(|| "plain".into()),
        ),
        None => ("text".into(), "plain".into()),
    };
    let mut params: Vec<(String, String)> = ct
        .and_then(|c| c.attributes())
        .map(|a| {
            a.iter()
                .map(|x| (x.name.to_string(), x.value.to_string()))
                .collect()
        })
        .unwrap_or_default();
    if ctype == "text"
        && !params
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("charset"))
    {
        params.push(("charset".into(), "us-ascii".into()));
    }
    let disposition = p.content_disposition().map(|d| {
        let ps = d
            .attributes()
            .map(|a| {
                a.iter()
                    .map(|x| (x.name.to_string(), x.value.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        (d.ctype().to_string(), ps)
    });
    let cte = p
        .content_transfer_encoding()
        .unwrap_or("7bit")
        .to_ascii_lowercase();
    let kind = match &p.body {
        PartType::Multipart(ids) if depth < MAX_DEPTH => Kind::Multi(
            ids.iter()
                .filter(|&&i| (i as usize) < m.parts.len())
                .map(|&i| build(raw, m, i as usize, base, depth + 1))
                .collect(),
        ),
        // The encapsulated message is parsed again from its own bytes, so its offsets are
        // plainly relative to them (unless it is transfer-encoded: then it stays opaque).
        PartType::Message(_)
            if depth < MAX_DEPTH && matches!(cte.as_str(), "7bit" | "8bit" | "binary") =>
        {
            let bytes = &raw[body..end];
            match MessageParser::default().parse(bytes) {
                Some(sub) if !sub.parts.is_empty() => {
                    Kind::Message(Box::new(build(raw, &sub, 0, body, depth + 1)))
                }
                _ => Kind::Leaf,
            }
        }
        _ => Kind::Leaf,
    };
    let envelope = (idx == 0).then(|| envelope_of(raw, m, start, body));
    Node {
        start,
        body,
        end,
        ctype,
        subtype,
        params,
        id: p.content_id().map(|s| format!("<{s}>")),
        desc: p.content_description().map(str::to_string),
        cte,
        disposition,
        kind,
        envelope,
    }
}

fn empty_envelope() -> Envelope<'static> {
    Envelope {
        date: NString(None),
        subject: NString(None),
        from: vec![],
        sender: vec![],
        reply_to: vec![],
        to: vec![],
        cc: vec![],
        bcc: vec![],
        in_reply_to: NString(None),
        message_id: NString(None),
    }
}

fn envelope_of(raw: &[u8], m: &Message<'_>, start: usize, body: usize) -> Envelope<'static> {
    let fs = fields(&raw[start..body]);
    let get = |name: &str| {
        fs.iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
            .map(|f| unfold(f.value))
    };
    let val = |name: &str| nstring_opt(get(name).as_deref().map(str::as_bytes));
    let root = &m.parts[0];
    let addrs = |name: &str| -> Vec<Address<'static>> {
        let h = root
            .headers
            .iter()
            .find(|h| h.name.as_str().eq_ignore_ascii_case(name));
        match h.map(|h| &h.value) {
            Some(HeaderValue::Address(a)) => addresses(a),
            _ => vec![],
        }
    };
    let from = addrs("From");
    let sender = match addrs("Sender") {
        s if s.is_empty() => from.clone(),
        s => s,
    };
    let reply_to = match addrs("Reply-To") {
        s if s.is_empty() => from.clone(),
        s => s,
    };
    Envelope {
        date: val("Date"),
        subject: val("Subject"),
        from,
        sender,
        reply_to,
        to: addrs("To"),
        cc: addrs("Cc"),
        bcc: addrs("Bcc"),
        in_reply_to: val("In-Reply-To"),
        message_id: val("Message-ID"),
    }
}

fn addresses(a: &mail_parser::Address<'_>) -> Vec<Address<'static>> {
    let one = |x: &mail_parser::Addr<'_>| {
        let addr = x.address.as_deref().unwrap_or("");
        let (local, host) = match addr.rsplit_once('@') {
            Some((l, h)) => (l, Some(h)),
            None => (addr, None),
        };
        Address {
            name: nstring_opt(
                x.name
                    .as_deref()
                    .map(encode_word)
                    .as_deref()
                    .map(str::as_bytes),
            ),
            adl: NString(None),
            mailbox: nstring_opt(Some(local.as_bytes())),
            host: nstring_opt(host.map(str::as_bytes)),
        }
    };
    match a {
        mail_parser::Address::List(l) => l.iter().map(one).collect(),
        mail_parser::Address::Group(groups) => {
            let mut out = Vec::new();
            for g in groups {
                match &g.name {
                    // RFC 3501 group syntax: a start marker with the group name, the
                    // members, an end marker.
                    Some(n) => {
                        out.push(Address {
                            name: NString(None),
                            adl: NString(None),
                            mailbox: nstring_opt(Some(encode_word(n).as_bytes())),
                            host: NString(None),
                        });
                        out.extend(g.addresses.iter().map(one));
                        out.push(Address {
                            name: NString(None),
                            adl: NString(None),
                            mailbox: NString(None),
                            host: NString(None),
                        });
                    }
                    None => out.extend(g.addresses.iter().map(one)),
                }
            }
            out
        }
    }
}

/// A decoded display name back as ASCII: an RFC 2047 encoded word when it is not ASCII.
fn encode_word(s: &str) -> String {
    if s.is_ascii() {
        return s.to_string();
    }
    let mut out = String::from("=?utf-8?q?");
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => out.push(b as char),
            b' ' => out.push('_'),
            _ => out.push_str(&format!("={b:02X}")),
        }
    }
    out.push_str("?=");
    out
}

fn pairs(ps: &[(String, String)]) -> Vec<(IString<'static>, IString<'static>)> {
    ps.iter()
        .map(|(k, v)| (istring(k.as_bytes()), istring(v.as_bytes())))
        .collect()
}

fn structure(raw: &[u8], n: &Node, extended: bool) -> BodyStructure<'static> {
    let disposition = || Disposition {
        disposition: n
            .disposition
            .as_ref()
            .map(|(d, ps)| (istring(d.as_bytes()), pairs(ps))),
        tail: Some(Language {
            language: vec![],
            tail: Some(Location {
                location: NString(None),
                extensions: vec![],
            }),
        }),
    };
    if let Kind::Multi(children) = &n.kind {
        if let Ok(bodies) = Vec1::try_from(
            children
                .iter()
                .map(|c| structure(raw, c, extended))
                .collect::<Vec<_>>(),
        ) {
            return BodyStructure::Multi {
                bodies,
                subtype: istring(n.subtype.as_bytes()),
                extension_data: extended.then(|| MultiPartExtensionData {
                    parameter_list: pairs(&n.params),
                    tail: Some(disposition()),
                }),
            };
        }
    }
    let body = &raw[n.body..n.end];
    let lines = body.iter().filter(|&&b| b == b'\n').count() as u32;
    let specific = match &n.kind {
        Kind::Message(inner) => SpecificFields::Message {
            envelope: Box::new(inner.envelope.clone().unwrap_or_else(empty_envelope)),
            body_structure: Box::new(structure(raw, inner, extended)),
            number_of_lines: lines,
        },
        _ if n.ctype == "text" => SpecificFields::Text {
            subtype: istring(n.subtype.as_bytes()),
            number_of_lines: lines,
        },
        _ => SpecificFields::Basic {
            r#type: istring(n.ctype.as_bytes()),
            subtype: istring(n.subtype.as_bytes()),
        },
    };
    BodyStructure::Single {
        body: Body {
            basic: BasicFields {
                parameter_list: pairs(&n.params),
                id: nstring_opt(n.id.as_deref().map(str::as_bytes)),
                description: nstring_opt(n.desc.as_deref().map(str::as_bytes)),
                content_transfer_encoding: istring(n.cte.as_bytes()),
                size: u32::try_from(body.len()).unwrap_or(u32::MAX),
            },
            specific,
        },
        extension_data: extended.then(|| SinglePartExtensionData {
            md5: NString(None),
            tail: Some(disposition()),
        }),
    }
}

/// One header field of a header block.
struct Field<'b> {
    name: String,
    /// The whole field, with its folded lines and line end.
    whole: &'b [u8],
    /// The value after the colon, folded lines included.
    value: &'b [u8],
}

/// Splits a header block into fields (a line starting with space or tab continues the
/// previous field); the empty line ends it.
fn fields<'a>(block: &'a [u8]) -> Vec<Field<'a>> {
    let mut out: Vec<Field<'a>> = Vec::new();
    let mut start: Option<usize> = None;
    let mut i = 0;
    let close = |out: &mut Vec<Field<'a>>, s: usize, e: usize| {
        let whole = &block[s..e];
        if let Some(colon) = whole.iter().position(|&b| b == b':') {
            out.push(Field {
                name: String::from_utf8_lossy(&whole[..colon]).trim().to_string(),
                whole,
                value: &whole[colon + 1..],
            });
        }
    };
    while i < block.len() {
        let line_end = block[i..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(block.len(), |p| i + p + 1);
        let line = &block[i..line_end];
        let blank = line == b"\r\n" || line == b"\n";
        let cont = matches!(line.first(), Some(b' ' | b'\t'));
        if !cont {
            if let Some(s) = start.take() {
                close(&mut out, s, i);
            }
            if blank {
                break;
            }
            start = Some(i);
        }
        i = line_end;
    }
    if let Some(s) = start {
        close(&mut out, s, i.min(block.len()));
    }
    out
}

fn unfold(v: &[u8]) -> String {
    let s = String::from_utf8_lossy(v);
    s.replace("\r\n", "").replace('\n', "").trim().to_string()
}

/// HEADER.FIELDS (or .NOT): the matching fields as they are, then the empty line.
fn header_fields(
    block: &[u8],
    names: &[imap_codec::imap_types::core::AString<'_>],
    not: bool,
) -> Vec<u8> {
    let wanted: Vec<String> = names
        .iter()
        .map(|n| String::from_utf8_lossy(n.as_ref()).to_ascii_lowercase())
        .collect();
    let mut out = Vec::new();
    for f in fields(block) {
        if wanted.contains(&f.name.to_ascii_lowercase()) != not {
            out.extend_from_slice(f.whole);
            if !f.whole.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests;
