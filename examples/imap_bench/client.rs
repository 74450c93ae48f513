//! A minimal IMAP client for the benchmark: just enough of the protocol to log in, APPEND
//! with LITERAL+ (both servers announce it, so neither pays a continuation round trip),
//! SELECT and `UID FETCH 1:* (FLAGS)`, reading responses line by line (and the literals a
//! line announces). Not a general client: the benchmark measures the servers.

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

pub struct Client {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
    tag: u64,
    line: Vec<u8>,
}

/// What a command's untagged responses held, for the checks.
#[derive(Default)]
pub struct Untagged {
    /// Untagged FETCH responses.
    pub fetches: usize,
    /// The `* n EXISTS` of the response, if any.
    pub exists: Option<u64>,
}

impl Client {
    /// Connects and reads the greeting.
    pub async fn connect(addr: &str) -> Result<Client> {
        let s = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect {addr}"))?;
        s.set_nodelay(true)?;
        let (r, w) = s.into_split();
        let mut c = Client {
            r: BufReader::with_capacity(256 * 1024, r),
            w,
            tag: 0,
            line: Vec::new(),
        };
        c.read_line().await?;
        if !c.line.starts_with(b"* OK") {
            bail!("greeting: {}", String::from_utf8_lossy(&c.line));
        }
        Ok(c)
    }

    /// Reads one line (with the literal it may announce) into `self.line`.
    async fn read_line(&mut self) -> Result<()> {
        self.line.clear();
        loop {
            let n = self.r.read_until(b'\n', &mut self.line).await?;
            if n == 0 {
                bail!("connection closed");
            }
            // "{123}\r\n" at the end of a line: the literal follows, then the line goes on.
            let l = &self.line;
            let lit = l
                .strip_suffix(b"}\r\n")
                .and_then(|h| h.iter().rposition(|&b| b == b'{').map(|i| &h[i + 1..]))
                .and_then(|d| std::str::from_utf8(d).ok()?.parse::<usize>().ok());
            match lit {
                Some(len) => {
                    let at = self.line.len();
                    self.line.resize(at + len, 0);
                    self.r.read_exact(&mut self.line[at..]).await?;
                }
                None => return Ok(()),
            }
        }
    }

    /// Sends `parts` as one command (its tag first) and reads up to the tagged answer,
    /// which must be OK.
    async fn command(&mut self, parts: &[&[u8]]) -> Result<Untagged> {
        self.tag += 1;
        let tag = format!("t{}", self.tag);
        let mut buf = Vec::with_capacity(parts.iter().map(|p| p.len()).sum::<usize>() + 16);
        buf.extend_from_slice(tag.as_bytes());
        buf.push(b' ');
        for p in parts {
            buf.extend_from_slice(p);
        }
        buf.extend_from_slice(b"\r\n");
        self.w.write_all(&buf).await?;
        let mut u = Untagged::default();
        loop {
            self.read_line().await?;
            let l = &self.line;
            if l.starts_with(tag.as_bytes()) && l.get(tag.len()) == Some(&b' ') {
                let rest = &l[tag.len() + 1..];
                if !rest.starts_with(b"OK") {
                    bail!("{}", String::from_utf8_lossy(l).trim_end());
                }
                return Ok(u);
            }
            if l.starts_with(b"* ") {
                let mut w = l[2..].split(|&b| b == b' ');
                let n = w
                    .next()
                    .and_then(|n| std::str::from_utf8(n).ok()?.parse().ok());
                match (n, w.next()) {
                    (Some(_), Some(b"FETCH")) => u.fetches += 1,
                    (Some(n), Some(x)) if x.starts_with(b"EXISTS") => u.exists = Some(n),
                    _ => {}
                }
            }
        }
    }

    pub async fn login(&mut self, user: &str, pass: &str) -> Result<()> {
        self.command(&[format!("LOGIN \"{user}\" \"{pass}\"").as_bytes()])
            .await
            .map(drop)
    }

    /// APPEND to `mailbox` with a non-synchronizing literal.
    pub async fn append(&mut self, mailbox: &str, msg: &[u8]) -> Result<()> {
        let head = format!("APPEND \"{mailbox}\" {{{}+}}\r\n", msg.len());
        self.command(&[head.as_bytes(), msg]).await.map(drop)
    }

    /// SELECT; returns EXISTS.
    pub async fn select(&mut self, mailbox: &str) -> Result<u64> {
        let u = self
            .command(&[format!("SELECT \"{mailbox}\"").as_bytes()])
            .await?;
        u.exists.context("SELECT without EXISTS")
    }

    /// `UID FETCH 1:* (FLAGS)`; returns the number of FETCH responses.
    pub async fn fetch_all_flags(&mut self) -> Result<usize> {
        Ok(self.command(&[b"UID FETCH 1:* (FLAGS)"]).await?.fetches)
    }

    pub async fn logout(mut self) -> Result<()> {
        self.tag += 1;
        self.w
            .write_all(format!("t{} LOGOUT\r\n", self.tag).as_bytes())
            .await?;
        let mut rest = Vec::new();
        let _ = self.r.read_to_end(&mut rest).await;
        Ok(())
    }
}
