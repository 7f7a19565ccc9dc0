//! A streaming splitter for JSON text: it finds where each JSON value begins and ends without
//! parsing it, so a `{"Records":[...]}` file of any size is handled one record at a time and
//! memory stays bounded by the largest single record, not by the file.

use std::io::{self, Read};
use std::ops::Range;

/// Why a value could not be delimited. Positions are indexes into the scanner's buffer.
#[derive(Debug)]
pub enum ScanError {
    /// Reading (or decompressing) failed; bytes from `start` up to the buffer end were read.
    Io { start: usize, error: io::Error },
    /// The input ended inside the value that begins at `start`.
    Unterminated { start: usize },
    /// The value that begins at `start` grew past the size cap.
    TooLarge { start: usize },
}

pub struct Scanner<R> {
    reader: R,
    buf: Vec<u8>,
    /// Next unconsumed byte.
    pos: usize,
    /// End of valid data in `buf`.
    end: usize,
    /// Absolute input offset of `buf[0]`.
    base: u64,
    /// Line counting is incremental: `lines_to_counted` newlines precede absolute offset
    /// `counted`, so each byte is counted once however many line numbers are asked for.
    counted: u64,
    lines_to_counted: u64,
    eof: bool,
    max_value: usize,
}

const READ_CHUNK: usize = 256 * 1024;

impl<R: Read> Scanner<R> {
    pub fn new(reader: R, max_value: usize) -> Self {
        Scanner {
            reader,
            buf: vec![0; READ_CHUNK],
            pos: 0,
            end: 0,
            base: 0,
            counted: 0,
            lines_to_counted: 0,
            eof: false,
            max_value,
        }
    }

    pub fn bytes(&self, span: Range<usize>) -> &[u8] {
        &self.buf[span]
    }

    /// Absolute input offset of a buffer index.
    pub fn offset(&self, idx: usize) -> u64 {
        self.base + idx as u64
    }

    /// 1-based line number of a buffer index (indexes at or after the last one asked for are
    /// cheap; earlier ones are counted back from there).
    pub fn line(&mut self, idx: usize) -> u64 {
        let idx = idx.min(self.end);
        let counted = (self.counted - self.base) as usize;
        if idx >= counted {
            self.lines_to_counted +=
                memchr::memchr_iter(b'\n', &self.buf[counted..idx]).count() as u64;
            self.counted = self.base + idx as u64;
            self.lines_to_counted + 1
        } else {
            self.lines_to_counted
                - memchr::memchr_iter(b'\n', &self.buf[idx..counted]).count() as u64
                + 1
        }
    }

    /// Counts lines up to `idx` before the bytes before it are discarded.
    fn advance_line_count(&mut self, idx: usize) {
        if self.base + idx as u64 > self.counted {
            self.line(idx);
        }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.end);
    }

    pub fn set_position(&mut self, idx: usize) {
        self.pos = idx.min(self.end);
    }

    /// Drops bytes before `keep_from` and reads more. Returns how far indexes shifted down;
    /// Ok with `self.eof` set when the input is exhausted.
    fn fill(&mut self, keep_from: usize) -> io::Result<usize> {
        if keep_from > 0 {
            self.advance_line_count(keep_from);
            self.buf.copy_within(keep_from..self.end, 0);
            self.end -= keep_from;
            self.pos = self.pos.saturating_sub(keep_from);
            self.base += keep_from as u64;
        }
        if self.end + READ_CHUNK / 4 > self.buf.len() {
            let grow = self.buf.len().max(READ_CHUNK);
            self.buf.resize(self.buf.len() + grow, 0);
        }
        loop {
            match self.reader.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(keep_from);
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(keep_from);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.eof = true;
                    return Err(e);
                }
            }
        }
    }

    /// Shrinks the buffer back after an oversized value has been consumed.
    fn shrink(&mut self) {
        if self.buf.len() > 4 * READ_CHUNK && self.end - self.pos < READ_CHUNK {
            let live = self.end - self.pos;
            self.advance_line_count(self.pos);
            self.buf.copy_within(self.pos..self.end, 0);
            self.base += self.pos as u64;
            self.pos = 0;
            self.end = live;
            self.buf.truncate(READ_CHUNK.max(live));
            self.buf.shrink_to_fit();
        }
    }

    /// Skips whitespace (and a UTF-8 byte-order mark) and returns the next byte without
    /// consuming it; `None` at the end of input.
    pub fn peek(&mut self) -> Result<Option<u8>, ScanError> {
        loop {
            while self.pos < self.end {
                match self.buf[self.pos] {
                    b' ' | b'\t' | b'\r' | b'\n' => self.pos += 1,
                    0xEF if self.buf[self.pos..self.end].starts_with(&[0xEF, 0xBB, 0xBF]) => {
                        self.pos += 3
                    }
                    b => return Ok(Some(b)),
                }
            }
            if self.eof {
                return Ok(None);
            }
            let keep = self.pos;
            self.fill(keep).map_err(|error| ScanError::Io {
                start: self.pos,
                error,
            })?;
        }
    }

    /// Makes sure at least `n` bytes after the current position are buffered (unless the input
    /// ends first) and returns them.
    pub fn lookahead(&mut self, n: usize) -> Result<&[u8], ScanError> {
        while self.end - self.pos < n && !self.eof {
            let keep = self.pos;
            self.fill(keep).map_err(|error| ScanError::Io {
                start: self.pos,
                error,
            })?;
        }
        let stop = self.end.min(self.pos + n);
        Ok(&self.buf[self.pos..stop])
    }

    /// Delimits the next JSON value (after whitespace) and consumes it. A top-level value that
    /// does not start with `{`, `[` or `"` extends to the end of its line, so stray text is
    /// reported as one bad record rather than word by word.
    pub fn next_value(&mut self) -> Result<Option<Range<usize>>, ScanError> {
        let Some(first) = self.peek()? else {
            return Ok(None);
        };
        self.shrink();
        let mut start = self.pos;
        let mut i = start;
        let mut depth = 0usize;
        let mut in_str = false;
        let mut escaped = false;
        let scalar = !matches!(first, b'{' | b'[' | b'"');
        loop {
            if i >= self.end {
                if self.eof {
                    if scalar {
                        self.pos = self.end;
                        return Ok(Some(start..self.end));
                    }
                    return Err(ScanError::Unterminated { start });
                }
                if self.end - start > self.max_value {
                    return Err(ScanError::TooLarge { start });
                }
                let shift = self
                    .fill(start)
                    .map_err(|error| ScanError::Io { start: 0, error })?;
                start -= shift;
                i -= shift;
                continue;
            }
            if scalar {
                match memchr::memchr(b'\n', &self.buf[i..self.end]) {
                    Some(k) => {
                        self.pos = i + k + 1;
                        return Ok(Some(start..i + k));
                    }
                    None => {
                        i = self.end;
                        continue;
                    }
                }
            }
            if escaped {
                escaped = false;
                i += 1;
                continue;
            }
            if in_str {
                match memchr::memchr2(b'"', b'\\', &self.buf[i..self.end]) {
                    Some(k) => {
                        i += k;
                        if self.buf[i] == b'\\' {
                            escaped = true;
                        } else {
                            in_str = false;
                            if depth == 0 {
                                self.pos = i + 1;
                                return Ok(Some(start..i + 1));
                            }
                        }
                        i += 1;
                    }
                    None => i = self.end,
                }
                continue;
            }
            match self.buf[i] {
                b'"' => in_str = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        self.pos = i + 1;
                        return Ok(Some(start..i + 1));
                    }
                }
                _ => {}
            }
            i += 1;
        }
    }

    /// Reads whatever is left, up to `cap` bytes, for a dead-letter record; returns the bytes
    /// and whether more input was left unread.
    pub fn rest(&mut self, from: usize, cap: usize) -> (Vec<u8>, bool) {
        let from = from.min(self.end);
        let mut out = self.buf[from..self.end.min(from + cap)].to_vec();
        let mut truncated = self.end - from > cap;
        let mut chunk = vec![0u8; 64 * 1024];
        while !truncated && !self.eof {
            match self.reader.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let take = n.min(cap - out.len());
                    out.extend_from_slice(&chunk[..take]);
                    truncated = take < n || out.len() >= cap;
                }
            }
        }
        self.pos = self.end;
        self.eof = true;
        (out, truncated)
    }

    /// Index of the first newline at or after `from` in the buffered data.
    pub fn newline_after(&self, from: usize) -> Option<usize> {
        memchr::memchr(b'\n', &self.buf[from.min(self.end)..self.end]).map(|k| from + k)
    }

    pub fn buffered_end(&self) -> usize {
        self.end
    }

    /// Bytes currently allocated for buffering.
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out at most `n` bytes per read, to exercise buffer refills.
    struct Trickle<'a>(&'a [u8], usize);
    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(self.1).min(out.len());
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn values(input: &str, trickle: usize) -> Vec<String> {
        let mut sc = Scanner::new(Trickle(input.as_bytes(), trickle), 1 << 20);
        let mut out = Vec::new();
        while let Some(span) = sc.next_value().expect("scan") {
            out.push(String::from_utf8_lossy(sc.bytes(span)).into_owned());
        }
        out
    }

    #[test]
    fn splits_values_across_tiny_reads() {
        let input = "{\"a\":\"}\\\"{\"}\n [1,[2]] \"s\\\"\" {\"b\":{\"c\":[]}}";
        for trickle in [1, 2, 3, 7, 1000] {
            assert_eq!(
                values(input, trickle),
                vec![
                    "{\"a\":\"}\\\"{\"}",
                    "[1,[2]]",
                    "\"s\\\"\"",
                    "{\"b\":{\"c\":[]}}"
                ],
                "trickle {trickle}"
            );
        }
    }

    #[test]
    fn unterminated_and_oversized_values_are_errors() {
        let mut sc = Scanner::new(Trickle(b"{\"a\":1", 2), 1 << 20);
        assert!(matches!(
            sc.next_value(),
            Err(ScanError::Unterminated { start: 0 })
        ));
        let big = format!("{{\"a\":\"{}\"}}", "x".repeat(5000));
        let mut sc = Scanner::new(Trickle(big.as_bytes(), 100), 1000);
        assert!(matches!(sc.next_value(), Err(ScanError::TooLarge { .. })));
    }

    #[test]
    fn stray_text_is_one_line() {
        assert_eq!(values("hello world\n{}", 4), vec!["hello world", "{}"]);
    }

    /// Produces `{"Records":[{...},{...},...]}` with `n` records without holding it in memory.
    struct Synthetic {
        n: usize,
        i: usize,
        pending: Vec<u8>,
    }
    impl Read for Synthetic {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            while self.pending.len() < out.len() && self.i <= self.n {
                if self.i == 0 {
                    self.pending.extend_from_slice(b"{\"Records\":[");
                }
                if self.i < self.n {
                    let sep = if self.i > 0 { "," } else { "" };
                    let rec = format!(
                        "{sep}{{\"eventID\":\"{}\",\"pad\":\"{}\"}}",
                        self.i,
                        "p".repeat(200)
                    );
                    self.pending.extend_from_slice(rec.as_bytes());
                } else {
                    self.pending.extend_from_slice(b"]}");
                }
                self.i += 1;
            }
            let k = self.pending.len().min(out.len());
            out[..k].copy_from_slice(&self.pending[..k]);
            self.pending.drain(..k);
            Ok(k)
        }
    }

    #[test]
    fn memory_does_not_grow_with_input_size() {
        // ~100 MB of records: the buffer must stay at its initial size.
        let n = 450_000;
        let mut sc = Scanner::new(
            Synthetic {
                n,
                i: 0,
                pending: Vec::new(),
            },
            64 << 20,
        );
        assert_eq!(sc.peek().expect("peek"), Some(b'{'));
        sc.consume(b"{\"Records\":[".len());
        let mut seen = 0;
        let mut max_capacity = 0;
        loop {
            match sc.peek().expect("peek") {
                Some(b',') => sc.consume(1),
                Some(b']') => break,
                _ => {}
            }
            let Some(span) = sc.next_value().expect("value") else {
                break;
            };
            assert!(sc.bytes(span).starts_with(b"{\"eventID\""));
            seen += 1;
            max_capacity = max_capacity.max(sc.buffer_capacity());
        }
        assert_eq!(seen, n);
        assert!(sc.offset(0) > 100_000_000, "the whole input was streamed");
        assert!(
            max_capacity <= 2 * READ_CHUNK,
            "buffer grew to {max_capacity} bytes"
        );
    }

    #[test]
    fn offsets_and_lines_survive_refills() {
        let input = "{}\n{}\n\n{\"x\":1}";
        let mut sc = Scanner::new(Trickle(input.as_bytes(), 1), 1 << 20);
        let mut seen = Vec::new();
        while let Some(span) = sc.next_value().expect("scan") {
            seen.push((sc.offset(span.start), sc.line(span.start)));
        }
        assert_eq!(seen, vec![(0, 1), (3, 2), (7, 4)]);
    }
}
