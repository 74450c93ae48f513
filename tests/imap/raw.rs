//! Raw TCP: every command fed split at every byte boundary gets the same answer as when
//! sent whole; malformed input gets BAD or NO and the session (and node) keep serving.

use super::common::{cluster, imap_addr, PASSWORD};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A raw IMAP connection.
struct Conn {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Conn {
    fn open(addr: &str) -> Conn {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.set_nodelay(true).unwrap();
        let mut c = Conn {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        };
        let greeting = c.line();
        assert!(greeting.starts_with("* OK "), "{greeting}");
        c
    }

    /// One response line, with any literal it announces appended.
    fn line(&mut self) -> String {
        let mut buf = Vec::new();
        self.r.read_until(b'\n', &mut buf).expect("read");
        assert!(!buf.is_empty(), "the server closed the connection");
        let mut s = String::from_utf8_lossy(&buf).into_owned();
        if let Some(n) = literal_len(&s) {
            let mut lit = vec![0; n];
            self.r.read_exact(&mut lit).expect("literal");
            s.push_str(&String::from_utf8_lossy(&lit));
            s.push_str(&self.line());
        }
        s
    }

    /// Sends `cmd` (in two writes split at `at`, if given) and returns every line up to
    /// and including the tagged status of `tag`.
    fn exchange(&mut self, tag: &str, cmd: &[u8], at: Option<usize>) -> Vec<String> {
        match at {
            Some(k) => {
                self.w.write_all(&cmd[..k]).unwrap();
                self.w.flush().unwrap();
                std::thread::sleep(Duration::from_millis(2));
                self.w.write_all(&cmd[k..]).unwrap();
            }
            None => self.w.write_all(cmd).unwrap(),
        }
        let mut out = Vec::new();
        loop {
            let l = self.line();
            let done = l.starts_with(&format!("{tag} "));
            out.push(l);
            if done {
                return out;
            }
        }
    }
}

fn literal_len(line: &str) -> Option<usize> {
    let t = line.trim_end_matches(['\r', '\n']);
    let open = t.rfind('{')?;
    t.strip_suffix('}')?[open + 1..].parse().ok()
}

/// Responses that differ between runs only by the UID an APPEND got, or by the `[CLOSED]`
/// a SELECT or EXAMINE sends when another mailbox was selected before (RFC 7162 3.2.11).
fn normalize(lines: Vec<String>) -> Vec<String> {
    lines
        .into_iter()
        .filter(|l| !l.starts_with("* OK [CLOSED]"))
        .map(|l| match l.find("[APPENDUID ") {
            Some(i) => {
                let rest = &l[i + 11..];
                let uv = rest.split(' ').next().unwrap_or("");
                format!("{}[APPENDUID {uv} N]", &l[..i])
            }
            None => l,
        })
        .collect()
}

const MSG: &str = "From: a@example.org\r\nSubject: hello split\r\n\r\nsplit body\r\n";

#[test]
fn every_command_split_at_every_byte_gets_the_same_answer() {
    let mut c = cluster(1);
    c.start(0, &[]);
    let addr = imap_addr(&c, 0);
    let login = format!("L1 LOGIN alice \"{PASSWORD}\"\r\n");
    // LOGIN: a new connection per split point.
    let mut want_login = None;
    for at in std::iter::once(None).chain((1..login.len()).map(Some)) {
        let mut conn = Conn::open(&addr);
        let got = conn.exchange("L1", login.as_bytes(), at);
        assert!(got.last().unwrap().starts_with("L1 OK"), "{got:?}");
        match &want_login {
            None => want_login = Some(got),
            Some(w) => assert_eq!(&got, w, "LOGIN split at {at:?}"),
        }
    }
    let mut conn = Conn::open(&addr);
    conn.exchange("L1", login.as_bytes(), None);
    let setup = format!("S1 APPEND INBOX (\\Seen) {{{}+}}\r\n{MSG}\r\n", MSG.len());
    conn.exchange("S1", setup.as_bytes(), None);
    conn.exchange("S2", b"S2 CREATE Other\r\n", None);
    let cmds: Vec<(&str, String)> = vec![
        ("a1", "a1 CAPABILITY\r\n".into()),
        ("a2", "a2 NOOP\r\n".into()),
        ("a3", "a3 LIST \"\" \"*\"\r\n".into()),
        ("a4", "a4 STATUS INBOX (MESSAGES UIDNEXT UNSEEN)\r\n".into()),
        ("a5", "a5 EXAMINE INBOX\r\n".into()),
        (
            "a6",
            "a6 FETCH 1 (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[TEXT]<0.5>)\r\n".into(),
        ),
        ("a7", "a7 UID SEARCH SUBJECT \"hello split\"\r\n".into()),
        (
            "a8",
            "a8 UID FETCH 1:* (UID RFC822.SIZE BODYSTRUCTURE ENVELOPE)\r\n".into(),
        ),
        (
            "a9",
            format!("a9 APPEND Other {{{}+}}\r\n{MSG}\r\n", MSG.len()),
        ),
        ("b1", "b1 SELECT \"Other\"\r\n".into()),
        ("b2", "b2 UID STORE 1 FLAGS (\\Flagged)\r\n".into()),
        ("b3", "b3 EXAMINE INBOX\r\n".into()),
    ];
    for (tag, cmd) in &cmds {
        let want = normalize(conn.exchange(tag, cmd.as_bytes(), None));
        assert!(
            want.last().unwrap().starts_with(&format!("{tag} OK")),
            "{cmd:?}: {want:?}"
        );
        for at in 1..cmd.len() {
            let got = normalize(conn.exchange(tag, cmd.as_bytes(), Some(at)));
            // A SELECT after appends to the selected mailbox may report more messages;
            // the appends here go to Other while INBOX is selected, so answers are equal.
            if *tag == "b1" {
                assert_eq!(got.last(), want.last(), "{cmd:?} split at {at}");
                continue;
            }
            assert_eq!(got, want, "{cmd:?} split at {at}");
        }
    }
    drop(conn);
    c.stop(0);
}

#[test]
fn malformed_input_gets_bad_and_the_node_keeps_serving() {
    let mut c = cluster(1);
    c.start(0, &[]);
    let addr = imap_addr(&c, 0);
    let mut conn = Conn::open(&addr);
    let expect = |conn: &mut Conn, send: &[u8], tag: &str, status: &str| {
        let got = conn.exchange(tag, send, None);
        let last = got.last().unwrap();
        assert!(
            last.starts_with(&format!("{tag} {status}")),
            "{:?} -> {got:?}",
            String::from_utf8_lossy(send)
        );
        got
    };
    // Before login.
    expect(&mut conn, b"x1 SELECT INBOX\r\n", "x1", "BAD");
    expect(&mut conn, b"x2 FROBNICATE\r\n", "x2", "BAD");
    expect(&mut conn, b"x3 LOGIN alice\r\n", "x3", "BAD");
    let wrong = expect(&mut conn, b"x4 LOGIN alice wrong\r\n", "x4", "NO");
    assert!(
        wrong.last().unwrap().contains("AUTHENTICATIONFAILED"),
        "{wrong:?}"
    );
    // Garbage without a usable tag: an untagged BAD, then the session goes on.
    conn.w.write_all(b"\x01\x02\xff garbage\r\n").unwrap();
    let l = conn.line();
    assert!(l.starts_with("* BAD"), "{l}");
    expect(
        &mut conn,
        format!("x5 LOGIN alice \"{PASSWORD}\"\r\n").as_bytes(),
        "x5",
        "OK",
    );
    // Wrong state, unknown mailbox, bad arguments.
    expect(&mut conn, b"x6 FETCH 1 FLAGS\r\n", "x6", "BAD");
    let no = expect(&mut conn, b"x7 SELECT Nowhere\r\n", "x7", "NO");
    assert!(no.last().unwrap().contains("[NONEXISTENT]"), "{no:?}");
    expect(&mut conn, b"x8 STATUS INBOX (BOGUS)\r\n", "x8", "BAD");
    expect(&mut conn, b"x9 CREATE \"a//b\"\r\n", "x9", "NO");
    expect(&mut conn, b"y1 SELECT INBOX\r\n", "y1", "OK");
    expect(&mut conn, b"y2 FETCH 0 FLAGS\r\n", "y2", "BAD");
    expect(&mut conn, b"y3 FETCH 5 FLAGS\r\n", "y3", "BAD");
    expect(
        &mut conn,
        b"y4 STORE 1:* +FLAGS (\\Recent)\r\n",
        "y4",
        "BAD",
    );
    expect(&mut conn, b"y5 SEARCH FROBS\r\n", "y5", "BAD");
    expect(
        &mut conn,
        b"y6 UID FETCH 1:* (BODY[1.2.3.MIME])\r\n",
        "y6",
        "OK",
    );
    // A literal over the size limit is refused before it is read: no continuation.
    let big = conn.exchange("y7", b"y7 APPEND INBOX {999999999}\r\n", None);
    assert_eq!(big.len(), 1, "{big:?}");
    assert!(big[0].starts_with("y7 BAD"), "{big:?}");
    // A synchronizing literal within the limit gets its continuation.
    conn.w.write_all(b"y8 APPEND INBOX {21}\r\n").unwrap();
    let cont = conn.line();
    assert!(cont.starts_with("+ "), "{cont}");
    let ok8 = conn.exchange("y8", b"Subject: x\r\n\r\nbody!\r\n\r\n", None);
    assert!(
        ok8.last().unwrap().starts_with("y8 OK [APPENDUID "),
        "{ok8:?}"
    );
    // Not a mail message: refused, nothing stored.
    expect(&mut conn, b"y9 APPEND INBOX {6+}\r\nnohdr!\r\n", "y9", "NO");
    let long = format!("z1 NOOP {}\r\n", "x".repeat(100_000));
    expect(&mut conn, long.as_bytes(), "z1", "BAD");
    expect(&mut conn, b"z2 NOOP\r\n", "z2", "OK");
    // A client that vanishes mid-literal leaves nothing behind.
    let mut gone = Conn::open(&addr);
    gone.exchange(
        "g1",
        format!("g1 LOGIN alice \"{PASSWORD}\"\r\n").as_bytes(),
        None,
    );
    gone.w
        .write_all(b"g2 APPEND INBOX {100+}\r\nSubject: half\r\n\r\nonly part")
        .unwrap();
    drop(gone);
    std::thread::sleep(Duration::from_millis(300));
    let st = expect(&mut conn, b"z3 STATUS INBOX (MESSAGES)\r\n", "z3", "OK");
    assert!(st[0].contains("MESSAGES 1)"), "{st:?}");
    // The node still serves new connections.
    let mut fresh = Conn::open(&addr);
    let r = fresh.exchange(
        "f1",
        format!("f1 LOGIN alice \"{PASSWORD}\"\r\n").as_bytes(),
        None,
    );
    assert!(r.last().unwrap().starts_with("f1 OK"), "{r:?}");
    expect(&mut conn, b"z4 LOGOUT\r\n", "z4", "OK");
    c.stop(0);
}

#[test]
fn random_bytes_never_stop_the_node() {
    let mut c = cluster(1);
    c.start(0, &[]);
    let addr = imap_addr(&c, 0);
    // A fixed xorshift stream: the same bytes on every run.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    // Fragments of real syntax mixed with noise reach deeper into the parser than noise.
    let words: [&[u8]; 12] = [
        b"a1 ",
        b"LOGIN ",
        b"SELECT ",
        b"FETCH ",
        b"{5}\r\n",
        b"{3+}\r\n",
        b"(",
        b")",
        b"\"",
        b"BODY[",
        b"1:*",
        b"\r\n",
    ];
    for round in 0..40 {
        let mut s = TcpStream::connect(&addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = Vec::new();
        if round % 2 == 1 {
            buf.extend_from_slice(
                format!("L LOGIN alice \"{PASSWORD}\"\r\nS SELECT INBOX\r\n").as_bytes(),
            );
        }
        for _ in 0..(next() % 60) {
            if next() % 3 == 0 {
                buf.extend_from_slice(words[(next() % words.len() as u64) as usize]);
            } else {
                let n = next() % 16;
                buf.extend((0..n).map(|_| next() as u8));
            }
        }
        buf.extend_from_slice(b"\r\n");
        let _ = s.write_all(&buf);
        let mut sink = [0u8; 4096];
        while let Ok(n) = s.read(&mut sink) {
            if n == 0 {
                break;
            }
        }
    }
    // Still serving, and a session still works end to end.
    let mut conn = Conn::open(&addr);
    let r = conn.exchange(
        "f1",
        format!("f1 LOGIN alice \"{PASSWORD}\"\r\n").as_bytes(),
        None,
    );
    assert!(r.last().unwrap().starts_with("f1 OK"), "{r:?}");
    let r = conn.exchange("f2", b"f2 SELECT INBOX\r\n", None);
    assert!(r.last().unwrap().starts_with("f2 OK"), "{r:?}");
    // A node stops cleanly (SIGTERM, exit 0) with a session still open.
    c.stop(0);
    let panics = c.log_lines(0, "panicked");
    assert!(panics.is_empty(), "a session panicked: {panics:?}");
}

/// Closes `s` with a TCP reset (SO_LINGER 0): the node's next write to it fails with
/// EPIPE, which must end that session only (a node that let SIGPIPE kill it did not).
fn reset(s: TcpStream) {
    use std::os::fd::AsRawFd;
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setting a socket option on a socket we own, with a correctly sized value.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "SO_LINGER");
    drop(s);
}

#[test]
fn clients_that_reset_the_connection_never_stop_the_node() {
    let mut c = cluster(1);
    c.start(0, &[]);
    let addr = imap_addr(&c, 0);
    // A 4 MB message: its FETCH outgrows every socket buffer, so the node is mid-write
    // when the reset arrives.
    let big = c.tmp.path().join("big.eml");
    let mut body = b"From: a@example.org\r\nSubject: big\r\n\r\n".to_vec();
    while body.len() < 4 << 20 {
        body.extend_from_slice(
            b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abc\r\n",
        );
    }
    std::fs::write(&big, &body).unwrap();
    super::cluster_support::ok(&[
        "--data-dir",
        c.dir(0),
        "append",
        "--account",
        "alice",
        "--mailbox",
        "INBOX",
        super::cluster_support::s(&big),
    ]);
    for round in 0..6 {
        // Reset before the greeting is read, and in the middle of a large response.
        reset(TcpStream::connect(&addr).expect("connect"));
        let mut conn = Conn::open(&addr);
        let login = format!("a LOGIN alice \"{PASSWORD}\"\r\nb SELECT INBOX\r\n");
        conn.w.write_all(login.as_bytes()).unwrap();
        conn.w.write_all(b"c FETCH 1 BODY[]\r\n").unwrap();
        let mut first = [0u8; 64];
        conn.r.read_exact(&mut first).expect("the node answers");
        reset(conn.w);
        drop(conn.r);
        std::thread::sleep(Duration::from_millis(100));
        let st = c.nodes[0].child.as_mut().unwrap().try_wait().unwrap();
        assert!(st.is_none(), "round {round}: the node died: {st:?}");
    }
    // Still serving.
    let mut conn = Conn::open(&addr);
    let r = conn.exchange(
        "f1",
        format!("f1 LOGIN alice \"{PASSWORD}\"\r\n").as_bytes(),
        None,
    );
    assert!(r.last().unwrap().starts_with("f1 OK"), "{r:?}");
    c.stop(0);
}

/// BINARY (RFC 3516): parts with their transfer encoding undone, BINARY.SIZE, partials,
/// PEEK or not, and NO [UNKNOWN-CTE] for an encoding it cannot undo.
#[test]
fn binary_fetches_decoded_parts() {
    let mut c = cluster(1);
    c.start(0, &[]);
    let addr = imap_addr(&c, 0);
    let msg = "From: a@example.org\r\nSubject: parts\r\nMIME-Version: 1.0\r\n\
        Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
        --b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n\
        aGVs\r\nbG8A/w==\r\n\
        --b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
        caf=C3=A9 =\r\nsoft\r\n\
        --b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: x-unknown\r\n\r\n\
        zzz\r\n\
        --b--\r\n";
    let mut conn = Conn::open(&addr);
    let login = format!("a1 LOGIN alice \"{PASSWORD}\"\r\n");
    let r = conn.exchange("a1", login.as_bytes(), None);
    assert!(r.last().unwrap().starts_with("a1 OK"), "{r:?}");
    let caps = conn.exchange("a2", b"a2 CAPABILITY\r\n", None);
    assert!(caps[0].contains(" BINARY"), "{caps:?}");
    let append = format!("a3 APPEND INBOX {{{}+}}\r\n{msg}\r\n", msg.len());
    let r = conn.exchange("a3", append.as_bytes(), None);
    assert!(r.last().unwrap().starts_with("a3 OK"), "{r:?}");
    let r = conn.exchange("a4", b"a4 SELECT INBOX\r\n", None);
    assert!(r.last().unwrap().starts_with("a4 OK"), "{r:?}");
    let r = conn.exchange(
        "a5",
        b"a5 UID FETCH 1:* (BINARY.SIZE[1] BINARY.PEEK[1] BINARY.SIZE[2] BINARY.PEEK[2] BINARY.PEEK[2]<2.3>)\r\n",
        None,
    );
    let joined = r.concat();
    assert!(joined.contains("BINARY.SIZE[1] 7 "), "{joined:?}");
    // The CRLF before a boundary belongs to the boundary (RFC 2046 5.1.1).
    assert!(joined.contains("BINARY.SIZE[2] 10 "), "{joined:?}");
    assert!(joined.contains("hello\0"), "{joined:?}");
    assert!(joined.contains("~{10}\r\ncafé soft "), "{joined:?}");
    assert!(joined.contains("~{3}\r\nfé"), "partial <2.3>: {joined:?}");
    assert!(r.last().unwrap().starts_with("a5 OK"), "{r:?}");
    assert!(!joined.contains("\\Seen"), "PEEK sets nothing: {joined:?}");
    // The part in an unknown encoding: NO [UNKNOWN-CTE].
    let r = conn.exchange("a6", b"a6 UID FETCH 1 (BINARY.PEEK[3])\r\n", None);
    assert!(
        r.last().unwrap().starts_with("a6 NO [UNKNOWN-CTE]"),
        "{r:?}"
    );
    // BINARY without PEEK sets \Seen, told with the response.
    let r = conn.exchange("a7", b"a7 UID FETCH 1 (BINARY[1])\r\n", None);
    assert!(r.concat().contains("\\Seen"), "{r:?}");
    assert!(r.last().unwrap().starts_with("a7 OK"), "{r:?}");
    c.stop(0);
}

/// The node's peak resident memory (VmHWM) in bytes.
fn peak_rss(pid: u32) -> u64 {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kb: u64 = st
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kb * 1024
}

/// `UID FETCH 1:* BODY.PEEK[]` of a 96 MB mailbox is written as it is read: the node's
/// peak memory grows by far less than the mailbox (the responses of one command used to
/// be gathered whole before the first byte was written), and every body arrives whole.
#[test]
fn a_fetch_of_every_body_is_written_as_it_goes() {
    let mut c = cluster(1);
    c.start(0, &[]);
    let addr = imap_addr(&c, 0);
    let (n, size) = (48usize, 2usize << 20);
    for k in 0..n / 8 {
        c.append_sized(0, &format!("big{k}"), 8, size);
    }
    let pid = c.nodes[0].child.as_ref().unwrap().id();
    // Resets VmHWM to the current RSS (Linux >= 4.0), so the peak measured is the FETCH's.
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("clear_refs");
    let before = peak_rss(pid);
    let mut conn = Conn::open(&addr);
    let login = format!("a LOGIN alice \"{PASSWORD}\"\r\n");
    assert!(conn
        .exchange("a", login.as_bytes(), None)
        .last()
        .unwrap()
        .starts_with("a OK"));
    assert!(conn
        .exchange("b", b"b SELECT INBOX\r\n", None)
        .last()
        .unwrap()
        .starts_with("b OK"));
    let r = conn.exchange("c", b"c UID FETCH 1:* BODY.PEEK[]\r\n", None);
    assert!(r.last().unwrap().starts_with("c OK"), "{:?}", r.last());
    let bodies: Vec<&String> = r.iter().filter(|l| l.contains(" FETCH (")).collect();
    assert_eq!(bodies.len(), n, "one response per message");
    for b in &bodies {
        assert!(b.len() > size, "a whole body: {} bytes", b.len());
    }
    let grew = peak_rss(pid).saturating_sub(before);
    let mailbox = (n * size) as u64;
    eprintln!(
        "peak RSS grew by {} MB for a {} MB mailbox",
        grew >> 20,
        mailbox >> 20
    );
    assert!(
        grew < mailbox / 2,
        "peak RSS grew by {grew} bytes for {mailbox} bytes of mail"
    );
    c.stop(0);
}
