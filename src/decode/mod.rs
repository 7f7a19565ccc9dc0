//! Decoding: turns a byte stream (gzip or plain, detected from its first bytes) into JSON
//! values, one audit record at a time, and reports what could not be read.
//!
//! Two layouts are recognised from content:
//! - a CloudTrail delivery file `{"Records":[...]}`: the array is streamed element by element;
//! - a sequence of JSON values (JSON Lines or concatenated, pretty-printed objects).
//!
//! Damage handling: inside a `Records` array, a syntax error ends the file (the records before it
//! are kept, the rest becomes one dead letter with its byte offset). Between top-level values, a
//! value that never closes is reported line by line so the following lines are still read.

mod gunzip;
pub mod scan;

use std::io::{self, BufRead, BufReader, Cursor, Read};
use std::ops::ControlFlow;

use flate2::bufread::MultiGzDecoder;
use scan::{ScanError, Scanner};

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
        Ok(Box::new(MultiGzDecoder::new(buffered)))
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
    let mut sc = Scanner::whole(bytes, limits.max_record_bytes);
    // Whole content reads nothing, so the scanner cannot fail here; on an error the plain
    // split below reports it.
    let records =
        matches!(sc.peek(), Ok(Some(b'{'))) && sc.lookahead(4096).is_ok_and(is_records_object);
    if !records {
        return split_scanner(sc, limits, |p| sink.piece(p));
    }
    let mut f = |p: Piece<'_>| sink.piece(p);
    records_prologue(&mut sc, limits, &mut f)?;
    let start = sc.position();
    let (mut sc, from, count) = match String::from_utf8(sc.into_buffer()) {
        Ok(text) => {
            let (from, count) = records_from_text(&text, start, &mut sink)?;
            (
                Scanner::whole(text.into_bytes(), limits.max_record_bytes),
                from,
                count,
            )
        }
        Err(e) => (
            Scanner::whole(e.into_bytes(), limits.max_record_bytes),
            start,
            0,
        ),
    };
    sc.set_position(from);
    let mut f = |p: Piece<'_>| sink.piece(p);
    records_elements(&mut sc, count, limits, &mut f)?;
    split_scanner(sc, limits, f)
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
    split_scanner(Scanner::new(reader, limits.max_record_bytes), limits, f)
}

fn split_scanner<R: Read>(
    mut sc: Scanner<R>,
    limits: DecodeLimits,
    mut f: impl FnMut(Piece<'_>) -> ControlFlow<()>,
) -> ControlFlow<()> {
    loop {
        let next = match sc.peek() {
            Ok(next) => next,
            Err(e) => return report(&mut sc, e, "", limits, &mut f),
        };
        match next {
            None => return ControlFlow::Continue(()),
            Some(b'{') => {
                let records = match sc.lookahead(4096) {
                    Ok(head) => is_records_object(head),
                    Err(e) => return report(&mut sc, e, "", limits, &mut f),
                };
                if records {
                    records_array(&mut sc, limits, &mut f)?;
                    continue;
                }
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
                    format!("value larger than {} bytes", limits.max_record_bytes)
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
            Err(e) => return report(&mut sc, e, "", limits, &mut f),
        }
    }
}

/// Streams the elements of a `{"Records":[...]}` object, then skips any other members.
fn records_array<R: Read>(
    sc: &mut Scanner<R>,
    limits: DecodeLimits,
    f: &mut impl FnMut(Piece<'_>) -> ControlFlow<()>,
) -> ControlFlow<()> {
    records_prologue(sc, limits, f)?;
    records_elements(sc, 0, limits, f)
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

/// Streams the elements of a `Records` array from the scanner's position, `count` of them
/// having been read already, then skips the object's other members.
fn records_elements<R: Read>(
    sc: &mut Scanner<R>,
    mut count: u64,
    limits: DecodeLimits,
    f: &mut impl FnMut(Piece<'_>) -> ControlFlow<()>,
) -> ControlFlow<()> {
    loop {
        let next = match sc.peek() {
            Ok(n) => n,
            Err(e) => return report(sc, e, " inside the Records array", limits, f),
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
            Some(b']') => {
                sc.consume(1);
                break;
            }
            Some(b',') if count > 0 => {
                sc.consume(1);
                if matches!(sc.peek(), Ok(Some(b']'))) {
                    continue; // trailing comma: tolerated
                }
            }
            Some(_) if count > 0 => {
                let at = sc.position();
                let reason =
                    format!("expected ',' or ']' after record {count} of the Records array");
                return rest_is_dead(sc, at, reason, limits, f);
            }
            Some(_) => {}
        }
        match sc.next_value() {
            Ok(Some(span)) => {
                count += 1;
                let (offset, line) = (sc.offset(span.start), sc.line(span.start));
                f(Piece::Value {
                    bytes: sc.bytes(span),
                    offset,
                    line,
                    in_records: true,
                })?;
            }
            Ok(None) => continue,
            Err(e) => return report(sc, e, " inside the Records array", limits, f),
        }
    }
    // Other members after the array are not records; skip them up to the closing brace.
    loop {
        match sc.peek() {
            Ok(Some(b'}')) => {
                sc.consume(1);
                return ControlFlow::Continue(());
            }
            Ok(Some(b',' | b':')) => sc.consume(1),
            Ok(Some(_)) => match sc.next_value() {
                Ok(_) => {}
                Err(e) => return report(sc, e, " after the Records array", limits, f),
            },
            Ok(None) => return ControlFlow::Continue(()),
            Err(e) => return report(sc, e, " after the Records array", limits, f),
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
        let alphabet: &[u8] = b"{}[],:\" \n\\x\xff";
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
