//! One input unit (a file, an S3 object, a Kafka message) normalized into positioned items:
//! the decoder's pieces become events, digests and dead letters, each at its position in the
//! unit, which is what the batcher commits and a restart resumes after.

use std::ops::ControlFlow;
use std::sync::Arc;

use crate::decode::{self, DecodeLimits, Piece};
use crate::event::{CiemEvent, DeadLetter};
use crate::normalize::{Normalizer, Outcome, Stamp};

/// One decoded input item; each takes one position in its unit. An event's text may borrow
/// from the input (`'a`); [`Item::into_owned`] makes it independent of it.
#[derive(Debug)]
pub enum Item<'a> {
    Event(Box<CiemEvent<'a>>),
    Digest,
    Dead(DeadLetter),
}

impl Item<'_> {
    pub fn into_owned(self) -> Item<'static> {
        match self {
            Item::Event(e) => Item::Event(Box::new(e.into_owned())),
            Item::Digest => Item::Digest,
            Item::Dead(d) => Item::Dead(d),
        }
    }
}

/// Items a decoder on another thread hands over at a time. Small, so the batcher copies each
/// event into its columns while the event is still in cache (1024 cost ~20 % more CPU in a
/// replay, 64 ~2 %).
pub const ITEMS_PER_CHUNK: usize = 16;

/// Everything needed to decode a unit.
#[derive(Debug, Clone)]
pub struct DecodeContext {
    pub normalizer: Normalizer,
    pub limits: DecodeLimits,
    pub pipeline: Arc<str>,
}

impl DecodeContext {
    /// The context of a pipeline (its name goes into dead letters) with the default limits;
    /// an error says what in `normalize` is invalid.
    pub fn new(
        normalize: &crate::normalize::NormalizeConfig,
        pipeline: &str,
    ) -> Result<Self, String> {
        Ok(DecodeContext {
            normalizer: Normalizer::new(normalize)?,
            limits: DecodeLimits::default(),
            pipeline: Arc::from(pipeline),
        })
    }
}

/// Items for a consumer on another thread: made owned and handed to `send` in chunks of
/// [`ITEMS_PER_CHUNK`]. Call [`OwnedChunks::finish`] at the end for the last, partial chunk.
pub struct OwnedChunks<F: FnMut(Vec<(i64, Item<'static>)>) -> ControlFlow<()>> {
    chunk: Vec<(i64, Item<'static>)>,
    send: F,
    stopped: bool,
}

impl<F: FnMut(Vec<(i64, Item<'static>)>) -> ControlFlow<()>> OwnedChunks<F> {
    pub fn new(send: F) -> Self {
        OwnedChunks {
            chunk: Vec::with_capacity(ITEMS_PER_CHUNK),
            send,
            stopped: false,
        }
    }

    pub fn push(&mut self, position: i64, item: Item<'_>) -> ControlFlow<()> {
        self.chunk.push((position, item.into_owned()));
        if self.chunk.len() < ITEMS_PER_CHUNK {
            return ControlFlow::Continue(());
        }
        let full = std::mem::replace(&mut self.chunk, Vec::with_capacity(ITEMS_PER_CHUNK));
        let flow = (self.send)(full);
        self.stopped = flow.is_break();
        flow
    }

    /// Sends what is left, unless the consumer stopped.
    pub fn finish(mut self) {
        if !self.stopped && !self.chunk.is_empty() {
            let _ = (self.send)(std::mem::take(&mut self.chunk));
        }
    }
}

/// [`decode_unit`] for a consumer on another thread (see [`OwnedChunks`]).
pub fn decode_unit_chunked(
    input: decode::Input,
    ctx: &DecodeContext,
    stamp: &Stamp,
    emit: &mut dyn FnMut(Vec<(i64, Item<'static>)>) -> ControlFlow<()>,
) {
    let mut chunks = OwnedChunks::new(emit);
    decode_unit(input, ctx, stamp, &mut |position, item| {
        chunks.push(position, item)
    });
    chunks.finish();
}

/// Decodes a unit's byte stream (gzip or plain) and hands each positioned item to `emit` as
/// soon as it is read; an event borrows its text from the decoder's buffer, so `emit` copies
/// what it keeps. Stops when `emit` breaks.
pub fn decode_unit(
    input: decode::Input,
    ctx: &DecodeContext,
    stamp: &Stamp,
    emit: &mut dyn FnMut(i64, Item<'_>) -> ControlFlow<()>,
) {
    decode_content(decode::open(input, ctx.limits), ctx, stamp, emit);
}

/// [`decode_unit`] for a unit already opened by [`decode::open`] (perhaps on another thread):
/// content that could not be opened is one dead letter.
pub fn decode_content(
    content: std::io::Result<decode::Content>,
    ctx: &DecodeContext,
    stamp: &Stamp,
    emit: &mut dyn FnMut(i64, Item<'_>) -> ControlFlow<()>,
) {
    let unit = UnitItems {
        ctx,
        stamp,
        emit,
        position: 0,
        consumer_stopped: false,
    };
    let content = match content {
        Ok(r) => r,
        Err(e) => {
            let dead = unit.dead(format!("cannot read input: {e}"), &[], false, 0, 1, 0);
            let _ = (unit.emit)(0, Item::Dead(dead));
            return;
        }
    };
    let _ = decode::split_content(content, ctx.limits, unit);
}

/// Turns a unit's pieces into positioned items for `emit`.
struct UnitItems<'u> {
    ctx: &'u DecodeContext,
    stamp: &'u Stamp,
    emit: &'u mut dyn FnMut(i64, Item<'_>) -> ControlFlow<()>,
    /// The next item's position in the unit.
    position: i64,
    consumer_stopped: bool,
}

impl UnitItems<'_> {
    fn dead(
        &self,
        reason: String,
        raw: &[u8],
        truncated: bool,
        offset: u64,
        line: u64,
        position: i64,
    ) -> DeadLetter {
        let mut d = DeadLetter::new(
            self.ctx.pipeline.clone(),
            self.stamp.origin(position),
            reason,
            raw,
            self.ctx.limits.dead_letter_raw_cap,
            self.stamp.ingest_time_ms,
        )
        .at(offset, line);
        d.raw_truncated |= truncated;
        d
    }

    /// Hands on what a record made; a rejected record becomes a dead letter holding `raw`, at
    /// `offset` and on the line `line` gives (counted only then).
    fn emit_outcome(
        &mut self,
        outcome: Outcome<'_>,
        raw: &[u8],
        offset: u64,
        line: impl FnOnce() -> u64,
        position: i64,
    ) {
        let item = match outcome {
            Outcome::Event(e) => Item::Event(e),
            Outcome::Digest => Item::Digest,
            Outcome::Rejected(reason) => {
                Item::Dead(self.dead(reason, raw, false, offset, line(), position))
            }
        };
        self.consumer_stopped = (self.emit)(position, item).is_break();
    }

    /// `split` also stops when the input is damaged beyond repair.
    fn flow(&self) -> ControlFlow<()> {
        if self.consumer_stopped {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

impl decode::Pieces for UnitItems<'_> {
    fn piece(&mut self, piece: Piece<'_>) -> ControlFlow<()> {
        match piece {
            Piece::Value {
                bytes,
                offset,
                line,
                in_records,
            } => {
                let (ctx, stamp) = (self.ctx, self.stamp);
                let mut position = self.position;
                ctx.normalizer.value(
                    bytes,
                    in_records,
                    stamp,
                    &mut position,
                    &mut |outcome, pos| {
                        // A value holding several records goes on only while `emit` does.
                        if !self.consumer_stopped {
                            self.emit_outcome(outcome, bytes, offset, || line, pos);
                        }
                    },
                );
                self.position = position;
            }
            Piece::Bad {
                bytes,
                truncated,
                offset,
                line,
                reason,
            } => {
                let position = self.position;
                let item = Item::Dead(self.dead(reason, bytes, truncated, offset, line, position));
                self.consumer_stopped = (self.emit)(position, item).is_break();
                self.position += 1;
            }
        }
        self.flow()
    }

    fn record(
        &mut self,
        text: &str,
        offset: u64,
        line: &mut dyn FnMut() -> u64,
    ) -> Option<(usize, ControlFlow<()>)> {
        let position = self.position;
        let (outcome, len) = self
            .ctx
            .normalizer
            .record_prefix(text, self.stamp, position)?;
        self.position += 1;
        let raw = text.as_bytes().get(..len).unwrap_or_default();
        self.emit_outcome(outcome, raw, offset, line, position);
        Some((len, self.flow()))
    }
}

/// Decodes one message (a Kafka record): a single JSON value, or an object holding a
/// `Records` array. Every resulting item takes the message's `position` (the Kafka offset),
/// so rows and dead letters point at the message they came from. An empty message is a dead
/// letter.
pub fn decode_message<'a>(
    bytes: &'a [u8],
    ctx: &DecodeContext,
    stamp: &Stamp,
    position: i64,
    emit: &mut dyn FnMut(Item<'a>),
) {
    let dead = |reason: String| {
        Item::Dead(DeadLetter::new(
            ctx.pipeline.clone(),
            stamp.origin(position),
            reason,
            bytes,
            ctx.limits.dead_letter_raw_cap,
            stamp.ingest_time_ms,
        ))
    };
    if bytes.trim_ascii().is_empty() {
        emit(dead("empty message".to_string()));
        return;
    }
    if bytes.len() > ctx.limits.max_record_bytes {
        emit(dead(format!(
            "message of {} bytes exceeds the {}-byte record limit",
            bytes.len(),
            ctx.limits.max_record_bytes
        )));
        return;
    }
    let mut next = position;
    ctx.normalizer
        .value(bytes, false, stamp, &mut next, &mut |outcome, _| {
            emit(match outcome {
                Outcome::Event(mut e) => {
                    e.origin.position = position;
                    Item::Event(e)
                }
                Outcome::Digest => Item::Digest,
                Outcome::Rejected(reason) => dead(reason),
            })
        });
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::normalize::NormalizeConfig;

    pub(crate) fn ctx() -> DecodeContext {
        DecodeContext {
            normalizer: Normalizer::new(&NormalizeConfig::default()).expect("normalizer"),
            limits: DecodeLimits::default(),
            pipeline: Arc::from("test"),
        }
    }

    pub(crate) fn stamp() -> Stamp {
        Stamp {
            source: Arc::from("topic"),
            partition: Some(3),
            ingest_time_ms: 1,
        }
    }

    pub(crate) fn message(id: &str) -> Vec<u8> {
        format!(
            r#"{{"eventID":"{id}","eventTime":1714557600,"eventSource":"cvm.tencentcloudapi.com","eventName":"RunInstances","eventRegion":"ap-guangzhou","userIdentity":{{"accountId":"1"}}}}"#
        )
        .into_bytes()
    }

    pub(crate) fn decode(bytes: &[u8], position: i64) -> Vec<Item<'static>> {
        let mut items = Vec::new();
        decode_message(bytes, &ctx(), &stamp(), position, &mut |i| {
            items.push(i.into_owned())
        });
        items
    }

    #[test]
    fn a_message_keeps_its_offset_as_position() {
        let items = decode(&message("a"), 42);
        assert!(
            matches!(&items[..], [Item::Event(e)] if e.origin.position == 42 && e.origin.partition == Some(3))
        );
        for bad in [&b""[..], b"  ", b"not json", b"[1,2]", b"{\"x\":1}"] {
            let items = decode(bad, 7);
            assert!(
                matches!(&items[..], [Item::Dead(d)] if d.origin.position == 7 && !d.reason.is_empty()),
                "{:?}: {items:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // A CloudTrail Records object: every record takes the message's offset.
        let records = br#"{"Records":[{"eventID":"r1","eventTime":"2024-05-01T00:00:00Z","eventSource":"iam.amazonaws.com","eventName":"ListUsers","awsRegion":"us-east-1"},{"eventID":"r2","eventTime":"2024-05-01T00:00:00Z","eventSource":"iam.amazonaws.com","eventName":"ListUsers","awsRegion":"us-east-1"}]}"#;
        let items = decode(records, 9);
        assert_eq!(items.len(), 2);
        assert!(
            items
                .iter()
                .all(|i| matches!(i, Item::Event(e) if e.origin.position == 9))
        );
    }

    /// What `decode_unit` hands on, as text: position and the item's fields.
    fn unit_items(input: decode::Input, stop_after: usize) -> Vec<String> {
        let mut items = Vec::new();
        decode_unit(input, &ctx(), &stamp(), &mut |position, item| {
            items.push(match item {
                Item::Event(e) => format!("{position} {e:?}"),
                Item::Digest => format!("{position} digest"),
                Item::Dead(d) => format!("{position} {d:?}"),
            });
            if items.len() >= stop_after {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        items
    }

    #[test]
    fn a_file_read_whole_gives_the_items_it_gives_streamed() {
        // Real CloudTrail files, and damaged copies of them: in memory, the records are read
        // in place; streamed, they are delimited first. Events, dead letters (reason, offset,
        // line, raw text) and positions must not differ.
        let files: [&[u8]; 2] = [
            include_bytes!(
                "../../tests/fixtures/samples/aws-cloudtrail/aws.defense-evasion.cloudtrail-delete.json"
            ),
            include_bytes!(
                "../../tests/fixtures/samples/aws-cloudtrail/aws.exfiltration.ec2-share-ebs-snapshot.json"
            ),
        ];
        let alphabet: &[u8] = b"{}[],:\" \n\\x\xff\0";
        let mut rng = crate::testing::xorshift(0x9E37_79B9_7F4A_7C15);
        let mut events = 0;
        for round in 0..600 {
            let mut input = files[round % 2].to_vec();
            if round >= 2 {
                let edits = 1 + rng() % 2;
                crate::testing::damage(&mut input, edits, alphabet, &mut rng);
            }
            let stop_after = if round % 5 == 0 { 1 } else { usize::MAX };
            let whole = unit_items(decode::Input::Whole(input.clone()), stop_after);
            let streamed = unit_items(
                decode::Input::Stream(Box::new(std::io::Cursor::new(input))),
                stop_after,
            );
            assert_eq!(whole, streamed, "round {round}");
            events += whole.iter().filter(|i| i.contains("CiemEvent")).count();
        }
        assert!(events > 150, "only {events} events");
    }
}
