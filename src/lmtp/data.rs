//! The DATA block: undoes dot-stuffing and finds the terminating `.` line (RFC 5321
//! §4.5.2), byte by byte, so input split anywhere decodes the same; keeps at most `cap`
//! bytes and only counts the rest, so an oversized message costs no memory.

/// Where the decoder is within the current line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pos {
    /// At the start of a line.
    Start,
    /// After a leading `.` (dropped: either stuffing or the end mark).
    Dot,
    /// After `.` and CR at the start of a line.
    DotCr,
    /// Anywhere else in a line.
    Mid,
}

/// Decodes one DATA block.
#[derive(Debug)]
pub struct DataDecoder {
    pos: Pos,
    body: Vec<u8>,
    cap: usize,
    /// Decoded bytes, kept or not.
    total: u64,
    done: bool,
}

impl DataDecoder {
    /// A decoder that keeps at most `cap` decoded bytes.
    pub fn new(cap: usize) -> DataDecoder {
        DataDecoder {
            pos: Pos::Start,
            body: Vec::new(),
            cap,
            total: 0,
            done: false,
        }
    }

    fn emit(&mut self, b: u8) {
        self.total += 1;
        if self.body.len() < self.cap {
            self.body.push(b);
        }
    }

    /// Feeds input; returns how many bytes it consumed (fewer than `input.len()` only when
    /// the end mark was found: the rest belongs to the next command).
    pub fn feed(&mut self, input: &[u8]) -> usize {
        for (i, &b) in input.iter().enumerate() {
            if self.done {
                return i;
            }
            self.pos = match (self.pos, b) {
                (Pos::Start, b'.') => Pos::Dot,
                // A bare LF after the dot also ends the block: some clients send LF lines.
                (Pos::Dot, b'\n') | (Pos::DotCr, b'\n') => {
                    self.done = true;
                    Pos::Start
                }
                (Pos::Dot, b'\r') => Pos::DotCr,
                (Pos::DotCr, b) => {
                    self.emit(b'\r');
                    self.emit(b);
                    Pos::Mid
                }
                (_, b'\n') => {
                    self.emit(b);
                    Pos::Start
                }
                (_, b) => {
                    self.emit(b);
                    Pos::Mid
                }
            };
        }
        input.len()
    }

    /// Whether the end mark was seen.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Whether more than `cap` bytes were decoded (the body is then incomplete).
    pub fn overflowed(&self) -> bool {
        self.total > self.cap as u64
    }

    /// The decoded bytes.
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_split(input: &[u8], cap: usize) -> (Vec<u8>, usize, bool) {
        // Every split point decodes to the same body and consumes the same bytes.
        let mut first = None;
        for at in 0..=input.len() {
            let mut d = DataDecoder::new(cap);
            let mut used = d.feed(&input[..at]);
            if !d.is_done() {
                used += d.feed(&input[at..]);
            }
            let over = d.overflowed();
            let r = (d.into_body(), used, over);
            if let Some(f) = &first {
                assert_eq!(f, &r, "split at {at}");
            } else {
                first = Some(r);
            }
        }
        first.expect("one split")
    }

    #[test]
    fn unstuffs_and_stops_at_the_end_mark() {
        let (b, used, over) =
            decode_split(b"A: b\r\n\r\n..x\r\n.\r\n..\r\nend\r\n.\r\nQUIT\r\n", 100);
        assert_eq!(b, b"A: b\r\n\r\n.x\r\n");
        assert_eq!(used, 16);
        assert!(!over);
        let (b, _, _) = decode_split(b"A: b\n.y\n.\n", 100);
        assert_eq!(b, b"A: b\ny\n");
        let (b, _, _) = decode_split(b"A: b\r\n.\rx\r\n.\r\n", 100);
        assert_eq!(b, b"A: b\r\n\rx\r\n");
    }

    #[test]
    fn a_dot_inside_a_line_is_data() {
        let (b, _, _) = decode_split(b"A: b\r\nx.\r\n.\r\n", 100);
        assert_eq!(b, b"A: b\r\nx.\r\n");
    }

    #[test]
    fn overflow_keeps_cap_bytes() {
        let (b, _, over) = decode_split(b"0123456789\r\n.\r\n", 4);
        assert_eq!(b, b"0123");
        assert!(over);
        let (_, _, over) = decode_split(b"0123\r\n.\r\n", 6);
        assert!(!over);
    }
}
