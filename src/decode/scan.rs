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
    /// The top-level value that begins at `start` grew past the size cap over several lines
    /// (everything from `start` is still buffered, so the caller can resume on its next line).
    TooLarge { start: usize },
    /// The value grew past the size cap and was skipped by scanning on (without buffering it).
    Skipped(Oversized),
}

/// A value over the size cap, skipped: what a dead letter needs of it.
#[derive(Debug)]
pub struct Oversized {
    /// Its first bytes (up to the head cap).
    pub head: Vec<u8>,
    /// Absolute input offset and 1-based line where it starts.
    pub offset: u64,
    pub line: u64,
    /// Bytes scanned: the whole value when `closed`, else up to the end of input.
    pub len: u64,
    /// False when the input ended inside it.
    pub closed: bool,
}

/// How a value that does not start with `{`, `[` or `"` is delimited.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scalar {
    /// To the end of its line: stray text between top-level values is one bad record.
    ToLineEnd,
    /// To the first whitespace, NUL or JSON punctuation: an element of an array or the value
    /// of an object member (`null`, `5`, `true`, a stray word), so the next one can be read.
    Token,
}

/// Ends a [`Scalar::Token`]: whitespace, NUL and the JSON punctuation.
fn ends_token(b: u8) -> bool {
    matches!(
        b,
        b' ' | b'\t' | b'\r' | b'\n' | 0 | b',' | b':' | b'[' | b']' | b'{' | b'}' | b'"'
    )
}

/// Read by the gzip reader when a gzip stream is followed by bytes that are not another gzip
/// member; the scanner takes it as the end of the content and keeps it for a dead letter.
#[derive(Debug)]
pub struct TrailingData {
    /// The first bytes (up to 64 KiB).
    pub head: Vec<u8>,
    /// How many trailing bytes there were.
    pub len: u64,
}

impl std::fmt::Display for TrailingData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} bytes of trailing data after the gzip stream",
            self.len
        )
    }
}

impl std::error::Error for TrailingData {}

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
    /// How much of a skipped oversized value is kept.
    head_cap: usize,
    /// A read error met by [`Scanner::lookahead`], returned by the next read instead: what
    /// was read before it is scanned first.
    deferred: Option<io::Error>,
    /// Trailing data after the gzip stream, met where the content ended.
    trailing: Option<TrailingData>,
}

const READ_CHUNK: usize = 256 * 1024;

impl Scanner<io::Empty> {
    /// Scans content that is all in memory: `bytes` is the buffer, nothing more is read.
    pub fn whole(bytes: Vec<u8>, max_value: usize) -> Self {
        Scanner {
            reader: io::empty(),
            end: bytes.len(),
            buf: bytes,
            pos: 0,
            base: 0,
            counted: 0,
            lines_to_counted: 0,
            eof: true,
            max_value,
            head_cap: 64 << 10,
            deferred: None,
            trailing: None,
        }
    }
}

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
            head_cap: 64 << 10,
            deferred: None,
            trailing: None,
        }
    }

    /// How much of a skipped oversized value [`ScanError::Skipped`] keeps (default 64 KiB).
    pub fn with_head_cap(mut self, head_cap: usize) -> Self {
        self.head_cap = head_cap;
        self
    }

    /// Trailing data after the gzip stream, if the content ended there (once).
    pub fn take_trailing(&mut self) -> Option<TrailingData> {
        self.trailing.take()
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
        // The buffer doubles as a value grows, but never past the size cap and one chunk: a
        // value over the cap is found before more of it is read (then skipped, not buffered).
        let most = self
            .max_value
            .saturating_add(READ_CHUNK)
            .max(2 * READ_CHUNK);
        if self.end + READ_CHUNK / 4 > self.buf.len() && self.buf.len() < most {
            let grow = self.buf.len().max(READ_CHUNK);
            self.buf.resize((self.buf.len() + grow).min(most), 0);
        }
        if let Some(e) = self.deferred.take() {
            self.eof = true;
            return Err(e);
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
                    if e.get_ref().is_some_and(|inner| inner.is::<TrailingData>()) {
                        // The content ends here; the trailing bytes are reported apart.
                        self.trailing = e
                            .into_inner()
                            .and_then(|inner| inner.downcast::<TrailingData>().ok())
                            .map(|t| *t);
                        return Ok(keep_from);
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Shrinks the buffer back after an oversized value has been consumed. Not once the input
    /// is all read: nothing more comes into the buffer, so shrinking would only copy it.
    fn shrink(&mut self) {
        if !self.eof && self.buf.len() > 4 * READ_CHUNK && self.end - self.pos < READ_CHUNK {
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
    /// A read error is deferred to the next read, so the values buffered before it are still
    /// delimited (a truncated gzip keeps its complete lines).
    pub fn lookahead(&mut self, n: usize) -> &[u8] {
        while self.end - self.pos < n && !self.eof {
            let keep = self.pos;
            if let Err(e) = self.fill(keep) {
                self.deferred = Some(e);
                self.eof = false;
                break;
            }
        }
        let stop = self.end.min(self.pos + n);
        &self.buf[self.pos..stop]
    }

    /// Delimits the next JSON value (after whitespace) and consumes it. A top-level value that
    /// does not start with `{`, `[` or `"` extends to the end of its line, so stray text is
    /// reported as one bad record rather than word by word.
    ///
    /// A value over the size cap: when all of it so far is one line, it is skipped to the end
    /// of that line ([`ScanError::Skipped`]); else [`ScanError::TooLarge`] leaves it buffered
    /// for the caller to resume on its next line.
    pub fn next_value(&mut self) -> Result<Option<Range<usize>>, ScanError> {
        self.next(Scalar::ToLineEnd)
    }

    /// Delimits the next element of an array (or value of an object member) and consumes it:
    /// a scalar ends at the first whitespace or punctuation, and a value over the size cap is
    /// skipped to its end by scanning on ([`ScanError::Skipped`]), without buffering it.
    pub fn next_element(&mut self) -> Result<Option<Range<usize>>, ScanError> {
        self.next(Scalar::Token)
    }

    #[inline]
    fn next(&mut self, scalars: Scalar) -> Result<Option<Range<usize>>, ScanError> {
        let Some(first) = self.peek()? else {
            return Ok(None);
        };
        self.shrink();
        let mut start = self.pos;
        let mut i = start;
        let mut state = Nesting::default();
        let scalar = !matches!(first, b'{' | b'[' | b'"');
        loop {
            if i >= self.end {
                if self.eof {
                    if scalar {
                        return self.delimited(start, self.end, self.end);
                    }
                    return Err(ScanError::Unterminated { start });
                }
                if self.end - start > self.max_value {
                    return Err(self.oversized(start, i, scalars, scalar, state));
                }
                let shift = self
                    .fill(start)
                    .map_err(|error| ScanError::Io { start: 0, error })?;
                start -= shift;
                i -= shift;
                continue;
            }
            if scalar {
                let found = match scalars {
                    Scalar::ToLineEnd => {
                        memchr::memchr(b'\n', &self.buf[i..self.end]).map(|k| (i + k, i + k + 1))
                    }
                    Scalar::Token => {
                        // The first byte belongs to the token even if it is punctuation.
                        let from = i.max(start + 1);
                        self.buf[from..self.end]
                            .iter()
                            .position(|&b| ends_token(b))
                            .map(|k| (from + k, from + k))
                    }
                };
                match found {
                    Some((stop, next)) => return self.delimited(start, stop, next),
                    None => {
                        i = self.end;
                        continue;
                    }
                }
            }
            match state.advance(&self.buf[..self.end], i) {
                Ok(stop) => return self.delimited(start, stop, stop),
                Err(resume) => i = resume,
            }
        }
    }

    /// The value `start..stop` has been delimited and reading goes on at `next`; one over the
    /// size cap (possible only when it was all buffered already) is reported as skipped.
    #[inline]
    fn delimited(
        &mut self,
        start: usize,
        stop: usize,
        next: usize,
    ) -> Result<Option<Range<usize>>, ScanError> {
        if stop - start > self.max_value {
            let mut skipped = self.skipped_from(start);
            skipped.len = (stop - start) as u64;
            self.pos = next;
            return Err(ScanError::Skipped(skipped));
        }
        self.pos = next;
        Ok(Some(start..stop))
    }

    /// An oversized value's head, offset and line, before it is scanned on.
    fn skipped_from(&mut self, start: usize) -> Oversized {
        let head = self.buf[start..self.end.min(start + self.head_cap)].to_vec();
        Oversized {
            head,
            offset: self.offset(start),
            line: self.line(start),
            len: 0,
            closed: true,
        }
    }

    /// The value at `start` has grown past the cap with everything up to `i` scanned (`i` is
    /// the buffer's end). A top-level value spanning lines stays buffered for the caller
    /// ([`ScanError::TooLarge`]); anything else is scanned on to its end without keeping it.
    #[cold]
    fn oversized(
        &mut self,
        start: usize,
        mut i: usize,
        scalars: Scalar,
        scalar: bool,
        mut state: Nesting,
    ) -> ScanError {
        let one_line = memchr::memchr(b'\n', &self.buf[start..i]).is_none();
        if scalars == Scalar::ToLineEnd && !one_line {
            return ScanError::TooLarge { start };
        }
        let mut skipped = self.skipped_from(start);
        loop {
            // Where the value ends in what is buffered, and where reading resumes.
            let found = if scalars == Scalar::ToLineEnd {
                memchr::memchr(b'\n', &self.buf[i..self.end]).map(|k| (i + k, i + k + 1))
            } else if scalar {
                // `i` is past the token's first byte (which may be punctuation).
                self.buf[i..self.end]
                    .iter()
                    .position(|&b| ends_token(b))
                    .map(|k| (i + k, i + k))
            } else {
                state.advance(&self.buf[..self.end], i).ok().map(|k| (k, k))
            };
            if let Some((stop, next)) = found {
                skipped.len = self.offset(stop) - skipped.offset;
                self.pos = next;
                return ScanError::Skipped(skipped);
            }
            i = self.end;
            if self.eof {
                skipped.len = self.offset(i) - skipped.offset;
                skipped.closed = false;
                self.pos = i;
                return ScanError::Skipped(skipped);
            }
            // Drop everything scanned: the buffer does not grow while the value is skipped.
            self.pos = i;
            if let Err(error) = self.fill(i) {
                return ScanError::Io { start: 0, error };
            }
            i = 0;
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

    /// The buffer, giving up the scanner (for content that is whole in memory: all of it).
    pub fn into_buffer(mut self) -> Vec<u8> {
        self.buf.truncate(self.end);
        self.buf
    }

    /// Bytes currently allocated for buffering.
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }
}

/// Where the JSON value that starts at `start` (with `{`, `[` or `"`) ends in `bytes`: the
/// index just after it, as [`Scanner::next_value`] delimits it; None when `bytes` ends first.
pub fn value_end(bytes: &[u8], start: usize) -> Option<usize> {
    Nesting::default().advance(bytes, start).ok()
}

/// Where the scan of a value stands: bracket depth and string state carry over buffer refills.
#[derive(Default)]
struct Nesting {
    depth: usize,
    in_str: bool,
    escaped: bool,
}

const BLOCK: usize = 64;

impl Nesting {
    /// Scans `buf` from `i`. `Ok(k)`: the value ends just before index `k`; `Err(k)`: `buf`
    /// ended first (`k == buf.len()`) and scanning resumes there after a refill.
    ///
    /// Inside a container, 64-byte blocks without a backslash are classified at once (bitmasks
    /// of quotes and brackets, strings masked out by a prefix XOR); a block holding a backslash,
    /// the first bytes of a value and the tail of the buffer go byte by byte, so escapes (and
    /// backslashes outside strings) behave exactly as in the byte loop.
    fn advance(&mut self, buf: &[u8], mut i: usize) -> Result<usize, usize> {
        loop {
            if self.depth > 0 && !self.escaped {
                while let Some(block) = buf.get(i..i + BLOCK) {
                    let Ok(block) = <&[u8; BLOCK]>::try_from(block) else {
                        break;
                    };
                    let m = classify_block(block);
                    if m.backslash != 0 {
                        break;
                    }
                    // Bits from an opening quote up to (not including) its closing quote.
                    let carry = if self.in_str { !0u64 } else { 0 };
                    let strings = prefix_xor(m.quote) ^ carry;
                    self.in_str = strings >> 63 == 1;
                    let open = m.open & !strings;
                    let close = m.close & !strings;
                    let closes = close.count_ones() as usize;
                    if closes < self.depth {
                        // Cannot reach depth 0 in this block.
                        self.depth = self.depth + open.count_ones() as usize - closes;
                    } else {
                        let mut brackets = open | close;
                        while brackets != 0 {
                            let j = brackets.trailing_zeros();
                            if open >> j & 1 == 1 {
                                self.depth += 1;
                            } else {
                                self.depth -= 1;
                                if self.depth == 0 {
                                    return Ok(i + j as usize + 1);
                                }
                            }
                            brackets &= brackets - 1;
                        }
                    }
                    i += BLOCK;
                }
            }
            // Before the opening bracket has been seen, one byte: blocks start right after it.
            let stop = buf.len().min(i + if self.depth == 0 { 1 } else { BLOCK });
            while i < stop {
                let b = buf[i];
                i += 1;
                if self.escaped {
                    self.escaped = false;
                } else if self.in_str {
                    if b == b'\\' {
                        self.escaped = true;
                    } else if b == b'"' {
                        self.in_str = false;
                        if self.depth == 0 {
                            return Ok(i);
                        }
                    }
                } else {
                    match b {
                        b'"' => self.in_str = true,
                        b'{' | b'[' => self.depth += 1,
                        b'}' | b']' => {
                            self.depth = self.depth.saturating_sub(1);
                            if self.depth == 0 {
                                return Ok(i);
                            }
                        }
                        _ => {}
                    }
                }
            }
            if i >= buf.len() {
                return Err(i);
            }
        }
    }
}

/// One bit per byte of a 64-byte block (bit k = byte k).
#[derive(Debug, PartialEq, Eq)]
struct BlockMasks {
    quote: u64,
    backslash: u64,
    /// `{` or `[`.
    open: u64,
    /// `}` or `]`.
    close: u64,
}

/// Prefix XOR: bit k becomes the XOR of bits 0..=k (turns quote bits into string spans).
fn prefix_xor(mut x: u64) -> u64 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    x
}

/// SSE2 (part of the x86_64 baseline, no runtime detection needed). Measured on the
/// 500k-event benchmark's JSON (single-threaded splitting of 76 MB): byte loop + memchr2
/// 0.89 GB/s, portable SWAR (`classify_block_swar`) 1.1-1.5 GB/s, SSE2 3.1-3.2 GB/s; on the
/// whole corpus that is ~0.3 CPU-s less than SWAR.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn classify_block(block: &[u8; BLOCK]) -> BlockMasks {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    let mut m = BlockMasks {
        quote: 0,
        backslash: 0,
        open: 0,
        close: 0,
    };
    // SAFETY: SSE2 is always available on x86_64; each load reads 16 bytes at offset 16*k < 64
    // of the 64-byte array `block` (unaligned loads are allowed).
    unsafe {
        let (quote, backslash) = (_mm_set1_epi8(b'"' as i8), _mm_set1_epi8(b'\\' as i8));
        // `{`/`[` and `}`/`]` differ only in bit 0x20.
        let (open, close, fold) = (
            _mm_set1_epi8(b'{' as i8),
            _mm_set1_epi8(b'}' as i8),
            _mm_set1_epi8(0x20),
        );
        for k in 0..BLOCK / 16 {
            let v = _mm_loadu_si128(block.as_ptr().add(16 * k).cast::<__m128i>());
            let folded = _mm_or_si128(v, fold);
            let bits = |x: __m128i| u64::from(_mm_movemask_epi8(x) as u16) << (16 * k);
            m.quote |= bits(_mm_cmpeq_epi8(v, quote));
            m.backslash |= bits(_mm_cmpeq_epi8(v, backslash));
            m.open |= bits(_mm_cmpeq_epi8(folded, open));
            m.close |= bits(_mm_cmpeq_epi8(folded, close));
        }
    }
    m
}

#[cfg(not(target_arch = "x86_64"))]
fn classify_block(block: &[u8; BLOCK]) -> BlockMasks {
    classify_block_swar(block)
}

/// Portable version: eight bytes at a time in a u64.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn classify_block_swar(block: &[u8; BLOCK]) -> BlockMasks {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    /// One bit per byte of `v` equal to `c`, gathered into the low 8 bits.
    fn equal(v: u64, c: u8) -> u64 {
        let x = v ^ (LOW * u64::from(c));
        // High bit of each byte set iff the byte is non-zero (no carries between bytes).
        let nonzero = ((x & !HIGH).wrapping_add(!HIGH)) | x;
        let zero = !nonzero & HIGH;
        (zero >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56
    }
    let mut m = BlockMasks {
        quote: 0,
        backslash: 0,
        open: 0,
        close: 0,
    };
    for (k, word) in block.chunks_exact(8).enumerate() {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        let v = u64::from_le_bytes(bytes);
        let folded = v | (LOW * 0x20);
        m.quote |= equal(v, b'"') << (8 * k);
        m.backslash |= equal(v, b'\\') << (8 * k);
        m.open |= equal(folded, b'{') << (8 * k);
        m.close |= equal(folded, b'}') << (8 * k);
    }
    m
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

    /// The byte-at-a-time delimiter the block scanner must agree with: the end of the value
    /// that starts at `buf[0]`, or None when it does not close.
    fn reference_end(buf: &[u8]) -> Option<usize> {
        let (mut depth, mut in_str, mut escaped) = (0usize, false, false);
        for (i, &b) in buf.iter().enumerate() {
            if escaped {
                escaped = false;
            } else if in_str {
                if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_str = false;
                    if depth == 0 {
                        return Some(i + 1);
                    }
                }
            } else {
                match b {
                    b'"' => in_str = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
            }
        }
        None
    }

    #[test]
    fn block_classifiers_agree() {
        let alphabet = b"\"\\{}[]ax :,\n\x00\xff\x7b\x5b\x7d\x5d\x22\x5c\xfb\xdb\xfd\xdd\xa2\xdc";
        let mut rng = crate::testing::xorshift(0x9E37_79B9_7F4A_7C15);
        for _ in 0..20_000 {
            let mut block = [0u8; BLOCK];
            for b in &mut block {
                *b = alphabet[(rng() % alphabet.len() as u64) as usize];
            }
            assert_eq!(
                classify_block(&block),
                classify_block_swar(&block),
                "{block:?}"
            );
        }
    }

    #[test]
    fn block_scan_matches_the_byte_loop() {
        // Quotes, escapes (also outside strings), brackets inside and outside strings, at
        // every alignment relative to the 64-byte blocks and to refills.
        let alphabet: &[&[u8]] = &[
            b"\"",
            b"\\",
            b"{",
            b"}",
            b"[",
            b"]",
            b"abcdefghijklmnopqrstuvwxyz0123456789",
            b"\"k\":\"v\",",
            b"\"\\\\\"",
            b"\"\\\"}\"",
            b" ",
        ];
        let mut rng = crate::testing::xorshift(0x2545_F491_4F6C_DD1D);
        for round in 0..4_000u32 {
            let mut input = vec![if round.is_multiple_of(2) { b'{' } else { b'[' }];
            let len = (rng() % 400) as usize;
            while input.len() < len {
                let piece = alphabet[(rng() % alphabet.len() as u64) as usize];
                input.extend_from_slice(piece);
            }
            if rng().is_multiple_of(2) {
                input.extend_from_slice(b"}]}]}]}]}]");
            }
            let want = reference_end(&input);
            for trickle in [1, 5, 64, 100, 1 << 20] {
                let mut sc = Scanner::new(Trickle(&input, trickle), 1 << 20);
                let got = match sc.next_value() {
                    Ok(Some(span)) => Some(span.end),
                    Err(ScanError::Unterminated { .. }) => None,
                    other => panic!("unexpected {other:?}"),
                };
                assert_eq!(
                    got,
                    want,
                    "trickle {trickle}: {}",
                    String::from_utf8_lossy(&input)
                );
            }
        }
    }

    #[test]
    fn unterminated_and_oversized_values_are_errors() {
        let mut sc = Scanner::new(Trickle(b"{\"a\":1", 2), 1 << 20);
        assert!(matches!(
            sc.next_value(),
            Err(ScanError::Unterminated { start: 0 })
        ));
        // Over several lines, a top-level value stays buffered for the caller to resume on its
        // next line.
        let big = format!("{{\"a\":\n\"{}\"}}", "x".repeat(5000));
        let mut sc = Scanner::new(Trickle(big.as_bytes(), 100), 1000);
        assert!(matches!(sc.next_value(), Err(ScanError::TooLarge { .. })));
    }

    /// Values over the cap are skipped by scanning on, whatever the read sizes: the buffer
    /// never holds more than the cap and a chunk, the head is kept, reading resumes after them.
    #[test]
    fn oversized_values_are_skipped_without_buffering_them() {
        let cap = 3 * READ_CHUNK;
        let big = format!("{{\"a\":\"{}\",\"b\":[\"]}}\"]}}", "x".repeat(4 * cap));
        let scalar = "7".repeat(2 * cap);
        // A Records array: elements are delimited as JSON, scalars too.
        let array = format!("{{\"n\":1}},{big},{scalar},{{\"n\":2}}]");
        // JSON Lines: a line over the cap is skipped to its end.
        let lines = format!("{{\"n\":1}}\n{big}\n{{\"n\":2}}\n");
        for trickle in [7, 4096, 1 << 30] {
            let mut sc = Scanner::new(Trickle(array.as_bytes(), trickle), cap).with_head_cap(10);
            let mut got = Vec::new();
            let mut max_buffer = 0;
            loop {
                match sc.peek().expect("peek") {
                    Some(b',') => sc.consume(1),
                    Some(b']') => break,
                    _ => {}
                }
                got.push(match sc.next_element() {
                    Ok(Some(span)) => String::from_utf8_lossy(sc.bytes(span)).into_owned(),
                    Err(ScanError::Skipped(o)) => format!(
                        "skipped {} {} {} {}",
                        String::from_utf8_lossy(&o.head),
                        o.offset,
                        o.len,
                        o.closed
                    ),
                    other => panic!("{other:?}"),
                });
                max_buffer = max_buffer.max(sc.buffer_capacity());
            }
            assert_eq!(
                got,
                vec![
                    "{\"n\":1}".to_string(),
                    format!("skipped {{\"a\":\"xxxx 8 {} true", big.len()),
                    format!("skipped 7777777777 {} {} true", 9 + big.len(), scalar.len()),
                    "{\"n\":2}".to_string(),
                ],
                "trickle {trickle}"
            );
            assert!(
                max_buffer <= cap + READ_CHUNK,
                "buffer grew to {max_buffer}"
            );

            let mut sc = Scanner::new(Trickle(lines.as_bytes(), trickle), cap);
            assert!(matches!(sc.next_value(), Ok(Some(_))));
            match sc.next_value() {
                Err(ScanError::Skipped(o)) => {
                    assert_eq!((o.offset, o.line, o.len), (8, 2, big.len() as u64));
                    assert_eq!(o.head.len(), 64 << 10);
                }
                other => panic!("{other:?}"),
            }
            let span = sc.next_value().expect("scan").expect("value");
            assert_eq!(sc.line(span.start), 3);
            assert_eq!(sc.bytes(span), b"{\"n\":2}");
            assert!(sc.buffer_capacity() <= cap + READ_CHUNK);
        }
        // The input ends inside one: skipped to the end, not closed.
        let cut = &array.as_bytes()[..8 + 2 * cap];
        let mut sc = Scanner::new(Trickle(cut, 1000), cap);
        assert_eq!(sc.peek().expect("peek"), Some(b'{'));
        sc.consume(8);
        match sc.next_element() {
            Err(ScanError::Skipped(o)) => assert_eq!((o.len, o.closed), (2 * cap as u64, false)),
            other => panic!("{other:?}"),
        }
        assert_eq!(sc.peek().expect("peek"), None);
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
