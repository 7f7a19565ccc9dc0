//! Decoding: turns a byte stream (gzip or plain, detected from its first bytes) into JSON
//! values, one audit record at a time, and reports what could not be read.
//!
//! Two layouts are recognised from content:
//! - a CloudTrail delivery file `{"Records":[...]}`: the array is streamed element by element;
//! - a sequence of JSON values (JSON Lines or concatenated, pretty-printed objects).
//!
//! Damage handling: inside a `Records` array, reading resumes after every element whose end is
//! certain (an element that is not an object, NUL bytes between elements, an element over the
//! record limit — skipped by scanning, not buffered); a syntax error ends the file (the records
//! before it are kept, the rest becomes one dead letter with its byte offset). Between top-level
//! values, a value that never closes is reported line by line so the following lines are still
//! read, and a line over the record limit is skipped to its end. Bytes after a gzip stream that
//! are not another gzip member end the content and are reported on their own.

mod gunzip;
pub mod scan;

use std::io::{self, BufRead, BufReader, Cursor, Read};
use std::ops::ControlFlow;

use scan::{Oversized, ScanError, Scanner};

/// Limits for decoding.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Largest single record accepted (bytes of JSON text).
    pub max_record_bytes: usize,
    /// How much raw input a dead letter keeps.
    pub dead_letter_raw_cap: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_record_bytes: 64 << 20,
            dead_letter_raw_cap: 64 << 10,
        }
    }
}

/// A piece of the input.
pub enum Piece<'a> {
    /// One JSON value. `in_records` is true for elements of a CloudTrail `Records` array.
    Value {
        bytes: &'a [u8],
        offset: u64,
        line: u64,
        in_records: bool,
    },
    /// Input that could not be delimited into values.
    Bad {
        bytes: &'a [u8],
        truncated: bool,
        offset: u64,
        line: u64,
        reason: String,
    },
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// A unit's bytes: a stream, or the whole of a small file already in memory.
pub enum Input {
    Stream(Box<dyn Read + Send>),
    Whole(Vec<u8>),
}

/// A unit's content, decompressed: streamed, or whole in memory.
pub enum Content {
    Stream(Box<dyn Read + Send>),
    Whole(Vec<u8>),
}

/// Whole content is kept in memory up to this size (decompressed); larger content is
/// streamed, so memory does not grow with file size.
pub const WHOLE_UP_TO: usize = 8 << 20;

/// Decompresses when the content starts with the gzip magic bytes. Whole input stays whole
/// when its content fits in [`WHOLE_UP_TO`] and in `limits.max_record_bytes` (so no value can
/// be cut as too large where the stream would not have been); anything else is streamed.
pub fn open(input: Input, limits: DecodeLimits) -> io::Result<Content> {
    let bytes = match input {
        Input::Stream(reader) => return open_stream(reader).map(Content::Stream),
        Input::Whole(bytes) => bytes,
    };
    let cap = limits.max_record_bytes.min(WHOLE_UP_TO);
    if bytes.starts_with(&GZIP_MAGIC) {
        if let Some(plain) = gunzip::gunzip_whole(&bytes, cap) {
            return Ok(Content::Whole(plain));
        }
    } else if bytes.len() <= cap {
        return Ok(Content::Whole(bytes));
    }
    open_stream(Box::new(Cursor::new(bytes))).map(Content::Stream)
}

/// Wraps a reader in a gzip decoder when its content starts with the gzip magic bytes.
fn open_stream(reader: impl Read + Send + 'static) -> io::Result<Box<dyn Read + Send>> {
    let mut buffered = BufReader::with_capacity(128 * 1024, reader);
    let head = buffered.fill_buf()?;
    if head.starts_with(&GZIP_MAGIC) {
        Ok(Box::new(gunzip::Members::new(buffered)))
    } else {
        Ok(Box::new(buffered))
    }
}

/// True if `head` begins (after whitespace and a BOM) with `{"Records":[`.
fn is_records_object(head: &[u8]) -> bool {
    let mut rest = head;
    let mut expect = |token: &[u8]| -> bool {
        let trimmed = rest.trim_ascii_start();
        if let Some(after) = trimmed.strip_prefix(token) {
            rest = after;
            true
        } else {
            false
        }
    };
    expect(b"{") && expect(b"\"Records\"") && expect(b":") && expect(b"[")
}

/// Receives what [`split_content`] finds in the content.
pub trait Pieces {
    /// A delimited value, or input that could not be delimited. Break stops the split.
    fn piece(&mut self, piece: Piece<'_>) -> ControlFlow<()>;

    /// Offered each element of a `Records` array of content that is whole in memory and
    /// valid UTF-8, before it is delimited: `text` starts at the element's `{` and runs to the
    /// end of the content; `offset` is its byte offset and `line()` its line. Returns the
    /// element's length (up to and including its closing `}`) and whether to go on when it
    /// read the element itself; None hands the element to [`Pieces::piece`] as usual.
    fn record(
        &mut self,
        _text: &str,
        _offset: u64,
        _line: &mut dyn FnMut() -> u64,
    ) -> Option<(usize, ControlFlow<()>)> {
        None
    }
}

impl<F: FnMut(Piece<'_>) -> ControlFlow<()>> Pieces for F {
    fn piece(&mut self, piece: Piece<'_>) -> ControlFlow<()> {
        self(piece)
    }
}

/// Splits decompressed content into pieces and hands each to `sink`, which may stop early
/// by returning `ControlFlow::Break`.
pub fn split_content(content: Content, limits: DecodeLimits, sink: impl Pieces) -> ControlFlow<()> {
    match content {
        Content::Stream(reader) => {
            let mut sink = sink;
            split(reader, limits, |p| sink.piece(p))
        }
        Content::Whole(bytes) => split_whole(bytes, limits, sink),
    }
}

/// Content in memory that is a `{"Records":[...]}` object in valid UTF-8 offers its elements
/// to [`Pieces::record`] straight from the buffer, so an element the sink can read is not
/// scanned twice (once to delimit it, once to parse it). Whatever is not a plain sequence of
/// such elements — the array's end, a damaged or refused element, what follows — goes to the
/// scanner from where the fast loop stopped, so pieces, offsets and reasons are the same as
/// for streamed content.
fn split_whole(bytes: Vec<u8>, limits: DecodeLimits, mut sink: impl Pieces) -> ControlFlow<()> {
    let bytes_len = bytes.len();
    let mut sc = whole_scanner(bytes, limits);
    // Whole content reads nothing, so the scanner cannot fail here; on an error the plain
    // split below reports it.
    // (Content over the record limit is never held whole but by tests: it goes to the scanner,
    // which enforces the limit.)
    let records = bytes_len <= limits.max_record_bytes
        && matches!(sc.peek(), Ok(Some(b'{')))
        && is_records_object(sc.lookahead(4096));
    if !records {
        return split_scanner(sc, limits, |p| sink.piece(p));
    }
    let mut f = |p: Piece<'_>| sink.piece(p);
    records_prologue(&mut sc, limits, &mut f)?;
    let start = sc.position();
    let (mut sc, from, count) = match String::from_utf8(sc.into_buffer()) {
        Ok(text) => {
            let (from, count) = records_from_text(&text, start, &mut sink)?;
            (whole_scanner(text.into_bytes(), limits), from, count)
        }
        Err(e) => (whole_scanner(e.into_bytes(), limits), start, 0),
    };
    sc.set_position(from);
    let mut f = |p: Piece<'_>| sink.piece(p);
    records_elements(&mut sc, count, count == 0, limits, &mut f)?;
    split_scanner(sc, limits, f)
}

fn whole_scanner(bytes: Vec<u8>, limits: DecodeLimits) -> Scanner<io::Empty> {
    Scanner::whole(bytes, limits.max_record_bytes).with_head_cap(limits.dead_letter_raw_cap)
}

/// Reads `Records` elements from `text` at `start` (just after the `[`) while each one is
/// a `{`, preceded by a `,` after the first, with only JSON whitespace between. Returns where
/// that stopped (before the separator it did not take) and how many elements were read.
fn records_from_text(
    text: &str,
    start: usize,
    sink: &mut impl Pieces,
) -> ControlFlow<(), (usize, u64)> {
    let bytes = text.as_bytes();
    let skip_ws = |mut i: usize| {
        while matches!(bytes.get(i), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            i += 1;
        }
        i
    };
    // Lines are counted only when asked for, each byte once.
    let (mut counted, mut newlines) = (0usize, 0u64);
    let mut line_at = |i: usize| {
        newlines += memchr::memchr_iter(b'\n', &bytes[counted..i]).count() as u64;
        counted = i;
        newlines + 1
    };
    let (mut pos, mut count) = (start, 0u64);
    loop {
        let mut i = skip_ws(pos);
        if count > 0 {
            if bytes.get(i) != Some(&b',') {
                break;
            }
            i = skip_ws(i + 1);
        }
        if bytes.get(i) != Some(&b'{') {
            break;
        }
        // `{` is ASCII, so `i` is a character boundary.
        let offset = i as u64;
        let end = match sink.record(&text[i..], offset, &mut || line_at(i)) {
            Some((len, flow)) => {
                count += 1;
                flow?;
                i + len
            }
            None => {
                let Some(end) = scan::value_end(bytes, i) else {
                    break; // unterminated: the scanner reports it
                };
                count += 1;
                let line = line_at(i);
                sink.piece(Piece::Value {
                    bytes: &bytes[i..end],
                    offset,
                    line,
                    in_records: true,
                })?;
                end
            }
        };
        pos = end;
    }
    ControlFlow::Continue((pos, count))
}

/// Splits `reader` (already decompressed) into pieces and hands each to `f`, which may stop
/// early by returning `ControlFlow::Break`.
pub fn split<R: Read>(
    reader: R,
    limits: DecodeLimits,
    f: impl FnMut(Piece<'_>) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let sc =
        Scanner::new(reader, limits.max_record_bytes).with_head_cap(limits.dead_letter_raw_cap);
    split_scanner(sc, limits, f)
}

/// Splits what the scanner reads, then reports trailing data after a gzip stream, if any, as
/// one dead letter (unless `f` stopped the split).
fn split_scanner<R: Read>(
    mut sc: Scanner<R>,
    limits: DecodeLimits,
    mut f: impl FnMut(Piece<'_>) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let mut stopped = false;
    let flow = split_values(&mut sc, limits, &mut |p| {
        let flow = f(p);
        stopped |= flow.is_break();
        flow
    });
    if stopped {
        return flow;
    }
    if let Some(trailing) = sc.take_trailing() {
        let at = sc.buffered_end();
        let (offset, line) = (sc.offset(at), sc.line(at));
        f(Piece::Bad {
            bytes: &trailing.head,
            truncated: (trailing.head.len() as u64) < trailing.len,
            offset,
            line,
            reason: format!("{trailing} (not gzip; ignored, as gzip -d does)"),
        })?;
    }
    flow
}

fn split_values<R: Read>(
    sc: &mut Scanner<R>,
    limits: DecodeLimits,
    f: &mut impl FnMut(Piece<'_>) -> ControlFlow<()>,
) -> ControlFlow<()> {
    loop {
        let next = match sc.peek() {
            Ok(next) => next,
            Err(e) => return report(sc, e, "", limits, f),
        };
        match next {
            None => return ControlFlow::Continue(()),
            Some(b'{') if is_records_object(sc.lookahead(4096)) => {
                records_array(sc, limits, f)?;
                continue;
            }
            Some(_) => {}
        }
        match sc.next_value() {
            Ok(Some(span)) => {
                let (offset, line) = (sc.offset(span.start), sc.line(span.start));
                f(Piece::Value {
                    bytes: sc.bytes(span),
                    offset,
                    line,
                    in_records: false,
                })?;
            }
            Ok(None) => return ControlFlow::Continue(()),
            Err(ScanError::Unterminated { start } | ScanError::TooLarge { start }) => {
                // Resynchronise on the next line: report the first line of the broken value.
                let reason = if sc.buffered_end() - start > limits.max_record_bytes {
                    format!(
                        "value larger than {} bytes over several lines",
                        limits.max_record_bytes
                    )
                } else {
                    "JSON value is not closed (truncated line or unbalanced brackets)".to_string()
                };
                let stop = sc.newline_after(start).unwrap_or(sc.buffered_end());
                let (offset, line) = (sc.offset(start), sc.line(start));
                let bytes = sc.bytes(start..stop.min(start + limits.dead_letter_raw_cap));
                let truncated = stop - start > limits.dead_letter_raw_cap;
                f(Piece::Bad {
                    bytes,
                    truncated,
                    offset,
                    line,
                    reason,
                })?;
                sc.set_position(stop + 1);
            }
            Err(ScanError::Skipped(skipped)) => skipped_piece(skipped, "", limits, f)?,
            Err(e) => return report(sc, e, "", limits, f),
        }
    }
}

/// A value over the record limit, skipped: one dead letter with its first bytes.
fn skipped_piece(
    skipped: Oversized,
    context: &str,
    limits: DecodeLimits,
    f: &mut impl FnMut(Piece<'_>) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let max = limits.max_record_bytes;
    let reason = if skipped.closed {
        format!(
            "record{context} of {} bytes is larger than the {max}-byte record limit (skipped)",
            skipped.len
        )
    } else {
        format!(
            "input ends inside a record{context} larger than the {max}-byte record limit, after \
             {} bytes of it (truncated file?)",
            skipped.len
        )
    };
    f(Piece::Bad {
        bytes: &skipped.head,
        truncated: (skipped.head.len() as u64) < skipped.len,
        offset: skipped.offset,
        line: skipped.line,
        reason,
    })
}

/// Streams the elements of a `{"Records":[...]}` object, then skips any other members.
fn records_array<R: Read>(
    sc: &mut Scanner<R>,
    limits: DecodeLimits,
    f: &mut impl FnMut(Piece<'_>) -> ControlFlow<()>,
) -> ControlFlow<()> {
    records_prologue(sc, limits, f)?;
    records_elements(sc, 0, true, limits, f)
}

/// Consumes `{ "Records" : [` — the lookahead already proved it is there.
fn records_prologue<R: Read>(
    sc: &mut Scanner<R>,
    limits: DecodeLimits,
    f: &mut impl FnMut(Piece<'_>) -> ControlFlow<()>,
) -> ControlFlow<()> {
    for token in [&b"{"[..], b"\"Records\"", b":", b"["] {
        if let Err(e) = sc.peek() {
            return report(sc, e, "", limits, f);
        }
        sc.consume(token.len());
    }
    ControlFlow::Continue(())
}

const IN_RECORDS: &str = " in the Records array";

/// Streams the elements of a `Records` array from the scanner's position, `count` of them
/// having been read already (`element_next`: just after `[` or `,`), then reads the object's other
/// members: a further `Records` array is read the same way, anything else is skipped.
///
/// Reading resumes after every element whose end is certain: an element that is not an object
/// (a scalar, a string, an array: delimited as JSON) is handed on like any other and becomes
/// one dead letter; an element over the record limit is skipped by scanning on to its closing
/// bracket; a run of NUL bytes between elements is one dead letter. Syntax damage (a missing
/// separator, an element that never closes) ends the file: the rest is one dead letter.
fn records_elements<R: Read>(
    sc: &mut Scanner<R>,
    mut count: u64,
    mut element_next: bool,
    limits: DecodeLimits,
    f: &mut impl FnMut(Piece<'_>) -> ControlFlow<()>,
) -> ControlFlow<()> {
    loop {
        let next = match sc.peek() {
            Ok(n) => n,
            Err(e) => return report(sc, e, IN_RECORDS, limits, f),
        };
        match next {
            None => {
                let at = sc.position();
                let (offset, line) = (sc.offset(at), sc.line(at));
                let reason = format!(
                    "input ends inside the Records array after {count} records (truncated file?)"
                );
                return f(Piece::Bad {
                    bytes: &[],
                    truncated: false,
                    offset,
                    line,
                    reason,
                });
            }
            Some(0) => {
                nul_run(sc, f)?;
                continue;
            }
            Some(b']') => {
                sc.consume(1); // a trailing comma is tolerated
                break;
            }
            Some(b',') => {
                // An empty element (`[,` or `,,`) holds nothing: tolerated as a trailing comma.
                sc.consume(1);
                element_next = true;
                continue;
            }
            Some(b) if !element_next || matches!(b, b'}' | b':') => {
                let at = sc.position();
                let reason = if element_next {
                    format!("expected a record after {count} records of the Records array")
                } else {
                    format!("expected ',' or ']' after record {count} of the Records array")
                };
                return rest_is_dead(sc, at, reason, limits, f);
            }
            Some(_) => {}
        }
        element_next = false;
        count += 1;
        match sc.next_element() {
            Ok(Some(span)) => {
                let (offset, line) = (sc.offset(span.start), sc.line(span.start));
                f(Piece::Value {
                    bytes: sc.bytes(span),
                    offset,
                    line,
                    in_records: true,
                })?;
            }
            Ok(None) => continue,
            Err(ScanError::Skipped(skipped)) => {
                let closed = skipped.closed;
                skipped_piece(skipped, IN_RECORDS, limits, f)?;
                if !closed {
                    return ControlFlow::Break(());
                }
            }
            Err(e) => return report(sc, e, IN_RECORDS, limits, f),
        }
    }
    other_members(sc, count, limits, f)
}

/// A run of NUL bytes (and whitespace) in the Records array: one dead letter.
fn nul_run<R: Read>(
    sc: &mut Scanner<R>,
    f: &mut impl FnMut(Piece<'_>) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let at = sc.position();
    let (offset, line) = (sc.offset(at), sc.line(at));
    let mut nuls = 0u64;
    while let Ok(Some(0)) = sc.peek() {
        let run = sc
            .lookahead(64 << 10)
            .iter()
            .take_while(|&&b| b == 0)
            .count();
        sc.consume(run);
        nuls += run as u64;
    }
    f(Piece::Bad {
        bytes: &[],
        truncated: false,
        offset,
        line,
        reason: format!("{nuls} NUL bytes in the Records array (skipped)"),
    })
}

/// The members of a `Records` object after its array, up to the closing brace: another
/// `Records` array (a duplicated key) is read like the first, other members are skipped.
fn other_members<R: Read>(
    sc: &mut Scanner<R>,
    count: u64,
    limits: DecodeLimits,
    f: &mut impl FnMut(Piece<'_>) -> ControlFlow<()>,
) -> ControlFlow<()> {
    const AFTER: &str = " after the Records array";
    loop {
        match sc.peek() {
            Ok(Some(b'}')) => {
                sc.consume(1);
                return ControlFlow::Continue(());
            }
            Ok(Some(b',' | b':' | 0)) => sc.consume(1),
            Ok(Some(_)) => match sc.next_element() {
                Ok(Some(span)) if sc.bytes(span.clone()) == b"\"Records\"" => {
                    if !matches!(sc.peek(), Ok(Some(b':'))) {
                        continue;
                    }
                    sc.consume(1);
                    if matches!(sc.peek(), Ok(Some(b'['))) {
                        sc.consume(1);
                        return records_elements(sc, count, true, limits, f);
                    }
                }
                Ok(_) => {}
                Err(ScanError::Skipped(skipped)) if skipped.closed => {}
                Err(ScanError::Skipped(skipped)) => {
                    return skipped_piece(skipped, AFTER, limits, f);
                }
                Err(e) => return report(sc, e, AFTER, limits, f),
            },
            Ok(None) => return ControlFlow::Continue(()),
            Err(e) => return report(sc, e, AFTER, limits, f),
        }
    }
}

/// Turns a scan error into a dead letter covering the rest of the input; ends the input.
fn report<R: Read>(
    sc: &mut Scanner<R>,
    error: ScanError,
    context: &str,
    limits: DecodeLimits,
    f: &mut impl FnMut(Piece<'_>) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let (start, reason) = match error {
        ScanError::Io { start, error } => (start, read_error_reason(&error)),
        ScanError::Unterminated { start } => (
            start,
            format!("input ends inside a JSON value{context} (truncated file?)"),
        ),
        ScanError::TooLarge { start } => (
            start,
            format!(
                "record{context} larger than {} bytes",
                limits.max_record_bytes
            ),
        ),
        ScanError::Skipped(skipped) => {
            skipped_piece(skipped, context, limits, f)?;
            return ControlFlow::Break(());
        }
    };
    rest_is_dead(sc, start, reason, limits, f)?;
    ControlFlow::Break(())
}

fn rest_is_dead<R: Read>(
    sc: &mut Scanner<R>,
    start: usize,
    reason: String,
    limits: DecodeLimits,
    f: &mut impl FnMut(Piece<'_>) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let (offset, line) = (sc.offset(start), sc.line(start));
    let (bytes, truncated) = sc.rest(start, limits.dead_letter_raw_cap);
    f(Piece::Bad {
        bytes: &bytes,
        truncated,
        offset,
        line,
        reason,
    })?;
    ControlFlow::Break(())
}

fn read_error_reason(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::UnexpectedEof => {
            format!("compressed input ends early (truncated gzip): {error}")
        }
        io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData => {
            format!("corrupt compressed input: {error}")
        }
        _ => format!("read failed: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_records_array() {
        let got = pieces_from(&b" {\"Records\" : [ {\"a\":1} , {\"b\":[2]} ]}\n{\"c\":3}"[..]);
        assert_eq!(
            got,
            vec![
                (true, "{\"a\":1}".to_string(), 16),
                (true, "{\"b\":[2]}".to_string(), 26),
                (false, "{\"c\":3}".to_string(), 39),
            ]
        );
    }

    #[test]
    fn missing_comma_ends_the_file_with_one_dead_letter() {
        let got = pieces_from(&b"{\"Records\":[{\"a\":1}{\"b\":2},{\"c\":3}]}"[..]);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].1, "{\"a\":1}");
        assert!(
            got[1]
                .1
                .starts_with("BAD expected ',' or ']' after record 1"),
            "{}",
            got[1].1
        );
        assert_eq!(got[1].2, 19);
    }

    #[test]
    fn broken_line_does_not_swallow_the_next() {
        let got = pieces_from(&b"{\"a\":1}\n{\"b\":\n{\"c\":3}\n"[..]);
        // The unclosed value consumes to the end of input, so its first line is reported and
        // scanning resumes on the next line.
        assert_eq!(got[0].1, "{\"a\":1}");
        assert!(got[1].1.starts_with("BAD JSON value is not closed"));
        assert_eq!(got[2].1, "{\"c\":3}");
    }

    #[test]
    fn truncated_gzip_keeps_what_was_read() {
        use std::io::Write;
        let mut records = String::from("{\"Records\":[");
        for i in 0..2000 {
            records.push_str(&format!(
                "{{\"eventID\":\"{i}\",\"pad\":\"{}\"}},",
                i * 7919
            ));
        }
        records.push_str("{\"eventID\":\"last\"}]}");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(records.as_bytes()).expect("gzip");
        let full = gz.finish().expect("gzip");
        let cut = &full[..full.len() / 2];
        let reader = open_stream(Cursor::new(cut.to_vec())).expect("open");
        let got = pieces_from(reader);
        // Read whole into memory first, the cut file is refused by libdeflate and streamed:
        // the same records, the same dead letter.
        let whole = open(Input::Whole(cut.to_vec()), DecodeLimits::default()).expect("open");
        assert!(matches!(whole, Content::Stream(_)));
        assert_eq!(pieces_of(whole), got);
        // The full file is decompressed whole, with the same records as streamed.
        let whole = open(Input::Whole(full.clone()), DecodeLimits::default()).expect("open");
        assert!(matches!(whole, Content::Whole(_)));
        let streamed = pieces_from(open_stream(Cursor::new(full)).expect("open"));
        assert_eq!(streamed.len(), 2001);
        assert_eq!(pieces_of(whole), streamed);
        let good = got.iter().filter(|p| !p.1.starts_with("BAD")).count();
        assert!(good > 100 && good < 2001, "kept {good}");
        let bad: Vec<_> = got.iter().filter(|p| p.1.starts_with("BAD")).collect();
        assert_eq!(bad.len(), 1);
        assert!(bad[0].1.contains("truncated gzip"), "{}", bad[0].1);
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(data).expect("gzip");
        gz.finish().expect("gzip")
    }

    fn records(prefix: &str, n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("{{\"eventID\":\"{prefix}{i}\"}}"))
            .collect()
    }

    /// Whole in memory and streamed, the same pieces: (in Records, text or "BAD reason").
    fn both_ways(input: &[u8]) -> Vec<(bool, String, u64)> {
        let streamed = pieces_from(input);
        assert_eq!(pieces_of(Content::Whole(input.to_vec())), streamed);
        streamed
    }

    #[test]
    fn an_element_that_is_not_an_object_is_one_piece_and_reading_resumes() {
        let (a, b) = (records("a", 100), records("b", 100));
        for junk in [
            "null",
            "5",
            "\"text\"",
            "[1,[2]]",
            "true",
            "\u{0}\u{0}\u{0}",
            "\u{0}",
        ] {
            let input = format!("{{\"Records\":[{},{junk},{}]}}", a.join(","), b.join(","));
            let got = both_ways(input.as_bytes());
            assert_eq!(got.len(), 201, "{junk}: {got:?}");
            let texts: Vec<_> = got.iter().map(|p| p.1.as_str()).collect();
            assert_eq!(
                texts[..100],
                a.iter().map(String::as_str).collect::<Vec<_>>()[..]
            );
            assert_eq!(
                texts[101..],
                b.iter().map(String::as_str).collect::<Vec<_>>()[..]
            );
            if junk.starts_with('\0') {
                assert_eq!(
                    got[100].1,
                    format!(
                        "BAD {} NUL bytes in the Records array (skipped)",
                        junk.len()
                    )
                );
            } else {
                assert_eq!(
                    got[100],
                    (
                        true,
                        junk.to_string(),
                        1 + input.find(&format!(",{junk},")).unwrap_or(0) as u64
                    )
                );
            }
        }
        // NUL bytes before a separator too.
        let input = format!("{{\"Records\":[{}\0\0,{}]}}", a[0], b[0]);
        let got = both_ways(input.as_bytes());
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[2].1, b[0]);
    }

    #[test]
    fn a_second_records_array_is_read_too() {
        let got =
            both_ways(b"{\"Records\":[{\"a\":1}],\"Records\":[{\"b\":2},{\"c\":3}]}\n{\"d\":4}");
        let texts: Vec<_> = got.iter().map(|p| (p.0, p.1.as_str())).collect();
        assert_eq!(
            texts,
            vec![
                (true, "{\"a\":1}"),
                (true, "{\"b\":2}"),
                (true, "{\"c\":3}"),
                (false, "{\"d\":4}")
            ]
        );
    }

    #[test]
    fn an_oversized_element_is_skipped_and_reading_resumes() {
        let limits = DecodeLimits {
            max_record_bytes: 1 << 20,
            dead_letter_raw_cap: 100,
        };
        let big = format!(
            "{{\"eventID\":\"big\",\"pad\":\"{}\"}}",
            "}]\\\"".repeat(1 << 19)
        );
        let input = format!(
            "{{\"Records\":[{{\"n\":1}},{big},{{\"n\":2}},{{\"n\":3}}]}}\n{big}\n{{\"n\":4}}"
        );
        let mut got = Vec::new();
        let _ = split(input.as_bytes(), limits, collect(&mut got));
        let texts: Vec<_> = got.iter().map(|p| &p.1[..p.1.len().min(200)]).collect();
        let reason = |at: &str| {
            format!(
                "BAD record{at} of {} bytes is larger than the 1048576-byte record limit (skipped)",
                big.len()
            )
        };
        assert_eq!(
            texts,
            vec![
                "{\"n\":1}",
                &reason(" in the Records array"),
                "{\"n\":2}",
                "{\"n\":3}",
                &reason(""),
                "{\"n\":4}"
            ]
        );
        // Held whole (content over the limit is not, but a sink may be handed such content).
        let mut whole = Vec::new();
        let _ = split_content(
            Content::Whole(input.into_bytes()),
            limits,
            collect(&mut whole),
        );
        assert_eq!(whole, got);
    }

    #[test]
    fn a_truncated_gzip_keeps_every_complete_line() {
        let lines: String = (0..3000)
            .map(|i| format!("{{\"eventID\":\"{i}\",\"n\":{}}}\n", i * 7919))
            .collect();
        let gz = gzip(lines.as_bytes());
        let cut = &gz[..gz.len() * 2 / 3];
        // What a streaming gunzip gives of the cut file: its complete lines are the values.
        let mut plain = Vec::new();
        let _ = flate2::read::GzDecoder::new(cut).read_to_end(&mut plain);
        let complete = plain.iter().filter(|&&b| b == b'\n').count();
        assert!(complete > 100);
        let got =
            pieces_of(open(Input::Whole(cut.to_vec()), DecodeLimits::default()).expect("open"));
        assert_eq!(got.len(), complete + 1, "{:?}", got.last());
        assert!(got[..complete].iter().all(|p| !p.1.starts_with("BAD")));
        assert!(
            got[complete].1.contains("truncated gzip"),
            "{:?}",
            got[complete]
        );
    }

    #[test]
    fn trailing_data_after_gzip_is_one_piece() {
        let lines: String = (0..3000)
            .map(|i| format!("{{\"eventID\":\"{i}\"}}\n"))
            .collect();
        let records = format!("{{\"Records\":[{}]}}", records("r", 50).join(","));
        for content in [lines.as_str(), records.as_str()] {
            // Two members, then garbage (or NUL padding).
            let mut gz = gzip(&content.as_bytes()[..content.len() / 2]);
            gz.extend(gzip(&content.as_bytes()[content.len() / 2..]));
            for garbage in [&b"GARBAGE\n not gzip"[..], &[0u8; 700][..], b"\x1f"] {
                let mut input = gz.clone();
                input.extend_from_slice(garbage);
                let got =
                    pieces_of(open(Input::Whole(input), DecodeLimits::default()).expect("open"));
                let good = got.iter().filter(|p| !p.1.starts_with("BAD")).count();
                assert_eq!(good, if content == lines { 3000 } else { 50 });
                let bad: Vec<_> = got.iter().filter(|p| p.1.starts_with("BAD")).collect();
                assert_eq!(bad.len(), 1, "{bad:?}");
                if garbage.len() > 1 {
                    assert_eq!(
                        bad[0],
                        &(
                            false,
                            format!(
                                "BAD {} bytes of trailing data after the gzip stream (not gzip; ignored, as gzip -d does)",
                                garbage.len()
                            ),
                            content.len() as u64
                        )
                    );
                } else {
                    assert!(bad[0].1.contains("gzip"), "{bad:?}");
                }
            }
        }
    }

    fn pieces_from(reader: impl Read) -> Vec<(bool, String, u64)> {
        let mut out = Vec::new();
        let _ = split(reader, DecodeLimits::default(), collect(&mut out));
        out
    }

    fn pieces_of(content: Content) -> Vec<(bool, String, u64)> {
        let mut out = Vec::new();
        let _ = split_content(content, DecodeLimits::default(), collect(&mut out));
        out
    }

    fn collect(
        out: &mut Vec<(bool, String, u64)>,
    ) -> impl FnMut(Piece<'_>) -> ControlFlow<()> + '_ {
        |p| {
            match p {
                Piece::Value {
                    bytes,
                    offset,
                    in_records,
                    ..
                } => out.push((
                    in_records,
                    String::from_utf8_lossy(bytes).into_owned(),
                    offset,
                )),
                Piece::Bad { reason, offset, .. } => {
                    out.push((false, format!("BAD {reason}"), offset))
                }
            }
            ControlFlow::Continue(())
        }
    }

    /// A sink that reads elements starting `{"ok"` itself (as a fast reader would) and leaves
    /// the others to `piece`; both land in one list, with their line numbers, so content
    /// split whole with it must give what the streamed split gives. Stops after `stop_after`
    /// items.
    struct Reading {
        out: Vec<(bool, String, u64, u64)>,
        read_itself: usize,
        stop_after: usize,
    }

    impl Reading {
        fn push(&mut self, item: (bool, String, u64, u64)) -> ControlFlow<()> {
            self.out.push(item);
            if self.out.len() >= self.stop_after {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }
    }

    impl Pieces for &mut Reading {
        fn piece(&mut self, p: Piece<'_>) -> ControlFlow<()> {
            let item = match p {
                Piece::Value {
                    bytes,
                    offset,
                    line,
                    in_records,
                } => (
                    in_records,
                    String::from_utf8_lossy(bytes).into_owned(),
                    offset,
                    line,
                ),
                Piece::Bad {
                    reason,
                    offset,
                    line,
                    ..
                } => (false, format!("BAD {reason}"), offset, line),
            };
            self.push(item)
        }

        fn record(
            &mut self,
            text: &str,
            offset: u64,
            line: &mut dyn FnMut() -> u64,
        ) -> Option<(usize, ControlFlow<()>)> {
            if !text.starts_with("{\"ok\"") {
                return None;
            }
            let mut values =
                serde_json::Deserializer::from_str(text).into_iter::<serde::de::IgnoredAny>();
            values.next()?.ok()?;
            let len = values.byte_offset();
            self.read_itself += 1;
            let flow = self.push((true, text[..len].to_string(), offset, line()));
            Some((len, flow))
        }
    }

    /// Splits `input` whole (with [`Reading`]) and streamed; asserts they agree and returns
    /// how many elements the sink read itself.
    fn whole_matches_streamed(input: &[u8], stop_after: usize) -> usize {
        let mut whole = Reading {
            out: Vec::new(),
            read_itself: 0,
            stop_after,
        };
        let _ = split_content(
            Content::Whole(input.to_vec()),
            DecodeLimits::default(),
            &mut whole,
        );
        let mut streamed = Reading {
            out: Vec::new(),
            read_itself: 0,
            stop_after,
        };
        let _ = split(input, DecodeLimits::default(), |p| (&mut streamed).piece(p));
        assert_eq!(
            whole.out,
            streamed.out,
            "input {:?}",
            String::from_utf8_lossy(input)
        );
        whole.read_itself
    }

    #[test]
    fn whole_content_is_read_in_place_with_the_same_pieces() {
        let read = whole_matches_streamed(
            b"\xEF\xBB\xBF {\"Records\" :\n[ {\"ok\":1} ,\n{\"no\":[2]},{\"ok\":\"}]\"}\n]}\n{\"c\":3}",
            usize::MAX,
        );
        assert_eq!(read, 2);
        let cases: &[&[u8]] = &[
            b"{\"Records\":[]}",
            b"{\"Records\":[{\"ok\":1},\n{\"ok\":2},\n]}",
            b"{\"Records\":[{\"ok\":1},\xEF\xBB\xBF{\"ok\":2}]}",
            b"{\"Records\":[{\"ok\":1}{\"ok\":2},{\"ok\":3}]}",
            b"{\"Records\":[{\"ok\":1},{\"ok\":2",
            b"{\"Records\":[{\"ok\":1},{\"no\":2",
            b"{\"Records\":[{\"ok\":1},",
            b"{\"Records\":[{\"ok\":1},\n5,{\"ok\":3}]}",
            b"{\"Records\":[{\"ok\":\"\xff\"},{\"ok\":2}]}",
            b"{\"Records\":[{\"ok\":1}]}\n{\"c\":3}\nnot json\n",
            b"{\"Records\":[{\"ok\":1}],\"x\":{\"y\":[1]}}",
            b"{\"Records\":[{\"ok\":1}]]",
            b"{\"Records\":[{\"ok\":1}}, {\"ok\":2}]}",
            b"{\"Records\":[{\"ok\" 1},{\"ok\":2}]}",
            b"{\"x\":1,\"Records\":[{\"ok\":1}]}",
            b"[{\"ok\":1}]",
            // Elements that are not objects, NUL bytes, empty elements: reading resumes.
            b"{\"Records\":[{\"ok\":1},null,{\"ok\":2}, 5 ,\"s\",[1,{}],true,x,{\"ok\":3}]}",
            b"{\"Records\":[null,{\"ok\":1}]}\n{\"c\":3}",
            b"{\"Records\":[{\"ok\":1},\0\0\0{\"ok\":2}\0\0,\n\0{\"ok\":3}]}",
            b"{\"Records\":[{\"ok\":1},,{\"ok\":2}]}",
            b"{\"Records\":[{\"ok\":1},},{\"ok\":2}]}",
            b"{\"Records\":[{\"ok\":1},nul",
            // A second Records array; scalar members after the array.
            b"{\"Records\":[{\"ok\":1}],\"Records\":[{\"ok\":2},{\"ok\":3}]}",
            b"{\"Records\":[{\"ok\":1}],\"n\":1,\"t\":true}\n{\"c\":3}",
            b"{\"Records\":[{\"ok\":1}],\"Records\":5,\"Records\":[{\"ok\":2}]}",
        ];
        for case in cases {
            for stop_after in [1, 2, usize::MAX] {
                whole_matches_streamed(case, stop_after);
            }
        }
    }

    #[test]
    fn damaged_whole_content_gives_the_streamed_pieces() {
        let base: &[u8] = b"{\"Records\": [\n  {\"ok\": 1, \"s\": \"a,}]\\\"\"},\n  {\"no\": [1, {\"b\": 2}]},\n  {\"ok\": {\"deep\": [[]]}}\n]}\n{\"tail\": true}\n";
        let alphabet: &[u8] = b"{}[],:\" \n\\x\xff\0";
        let mut rng = crate::testing::xorshift(0x2545_F491_4F6C_DD1D);
        let mut read = 0;
        for _ in 0..3000 {
            let mut input = base.to_vec();
            let edits = 1 + rng() % 3;
            crate::testing::damage(&mut input, edits, alphabet, &mut rng);
            read += whole_matches_streamed(&input, 1 + (rng() % 6) as usize);
        }
        assert!(read > 1000, "the sink read only {read} elements itself");
    }
}
