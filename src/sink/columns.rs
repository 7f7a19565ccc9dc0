//! A batch's events held as columns, one set per partition directory.
//!
//! Each event is copied into its partition's column buffers when the batcher takes it, while
//! it is still in cache, and the event itself is dropped. A pending batch then costs the bytes
//! of its values plus a few bytes per column and row (no per-field allocations), and writing a
//! partition hands the buffers to Arrow without copying them, or gathers them once when the
//! rows must be put in time order.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::builder::BooleanBufferBuilder;
use arrow::array::{
    ArrayRef, BooleanArray, Int32Array, Int64Array, ListArray, RecordBatch, StringArray,
    StructArray, TimestampMillisecondArray,
};
use arrow::buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::DataType;

use super::SinkError;
use crate::event::{CiemEvent, Provider};

/// A nullable UTF-8 column being filled: Arrow's layout (values, offsets, validity), kept in
/// growable buffers.
pub(crate) struct TextColumn {
    values: Vec<u8>,
    offsets: Vec<i32>,
    valid: BooleanBufferBuilder,
    nulls: usize,
    /// More than `i32::MAX` bytes were appended: the column cannot be encoded.
    overflow: bool,
}

impl TextColumn {
    pub(crate) fn new() -> Self {
        Self::with_capacity(0, 0)
    }

    fn with_capacity(rows: usize, bytes: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        TextColumn {
            values: Vec::with_capacity(bytes),
            offsets,
            valid: BooleanBufferBuilder::new(rows),
            nulls: 0,
            overflow: false,
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, value: Option<&str>) {
        match value {
            Some(v) => {
                self.values.extend_from_slice(v.as_bytes());
                self.valid.append(true);
            }
            None => {
                self.nulls += 1;
                self.valid.append(false);
            }
        }
        match i32::try_from(self.values.len()) {
            Ok(end) => self.offsets.push(end),
            Err(_) => {
                self.overflow = true;
                self.offsets.push(i32::MAX);
            }
        }
    }

    fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// The bytes of row `i` (empty for a null).
    #[inline]
    fn bytes(&self, i: usize) -> &[u8] {
        let start = self.offsets[i] as usize;
        let end = self.offsets[i + 1] as usize;
        self.values.get(start..end).unwrap_or_default()
    }

    /// The rows in `order`, in new buffers.
    fn gather(&self, order: &[u32]) -> TextColumn {
        let mut out = TextColumn::with_capacity(order.len(), self.values.len());
        out.overflow = self.overflow;
        // Validity first, in one go when there are no nulls (most columns).
        if self.nulls == 0 {
            out.valid.append_n(order.len(), true);
        } else {
            for &i in order {
                out.valid.append(self.valid.get_bit(i as usize));
            }
            out.nulls = self.nulls;
        }
        for &i in order {
            out.values.extend_from_slice(self.bytes(i as usize));
            // No overflow: the source's values fitted, and these are the same values.
            out.offsets.push(out.values.len() as i32);
        }
        out
    }

    pub(crate) fn finish(mut self, name: &str) -> Result<StringArray, SinkError> {
        if self.overflow {
            return Err(SinkError::Schema(format!(
                "column {name}: more than 2 GiB of text in one partition of a batch (lower the \
                 batch size, flush.max_mib)"
            )));
        }
        let nulls = (self.nulls > 0).then(|| NullBuffer::new(self.valid.finish()));
        if self
            .offsets
            .last()
            .is_none_or(|&end| end as usize != self.values.len())
            || nulls
                .as_ref()
                .is_some_and(|n| n.len() != self.offsets.len() - 1)
        {
            return Err(SinkError::Schema(format!(
                "column {name}: offsets and values disagree"
            )));
        }
        let offsets = OffsetBuffer::new(ScalarBuffer::from(self.offsets));
        // SAFETY: `values` only ever receives whole `&str`s (in `push` and `gather`), each
        // followed by its end in `offsets`, which therefore start at 0, never decrease, end at
        // `values.len()` (checked above, as is the validity's length) and fall on character
        // boundaries. Arrow's own check of all that re-validated every byte as UTF-8: 1.3 % of
        // a replay's instructions.
        Ok(unsafe { StringArray::new_unchecked(offsets, Buffer::from_vec(self.values), nulls) })
    }
}

/// Reads one text column's value from an event.
type TextOf = for<'a, 'b> fn(&'a CiemEvent<'b>) -> Option<&'a str>;

/// The CIEM text columns (except `resources` and `origin_source`), in the order they are kept.
pub(crate) const CIEM_TEXT: [(&str, TextOf); 31] = [
    ("activity_name", |e| Some(e.activity_name())),
    ("status", |e| Some(e.status())),
    ("cloud_provider", |e| Some(e.cloud_provider.as_str())),
    ("cloud_account_uid", |e| e.cloud_account_uid.as_deref()),
    ("cloud_region", |e| e.cloud_region.as_deref()),
    ("api_service_name", |e| e.api_service_name.as_deref()),
    ("service", |e| e.service.as_deref()),
    ("api_operation", |e| e.api_operation.as_deref()),
    ("action", |e| e.action.as_deref()),
    ("api_version", |e| e.api_version.as_deref()),
    ("api_response_error", |e| e.api_response_error.as_deref()),
    ("api_response_message", |e| {
        e.api_response_message.as_deref()
    }),
    ("actor_user_type", |e| e.actor_user_type.as_deref()),
    ("actor_user_uid", |e| e.actor_user_uid.as_deref()),
    ("actor_user_uid_alt", |e| e.actor_user_uid_alt.as_deref()),
    ("actor_user_name", |e| e.actor_user_name.as_deref()),
    ("actor_user_account_uid", |e| {
        e.actor_user_account_uid.as_deref()
    }),
    ("actor_credential_uid", |e| {
        e.actor_credential_uid.as_deref()
    }),
    ("actor_credential_kind", |e| e.actor_credential_kind),
    ("actor_session_issuer", |e| {
        e.actor_session_issuer.as_deref()
    }),
    ("actor_invoked_by", |e| e.actor_invoked_by.as_deref()),
    ("src_endpoint_ip", |e| e.src_endpoint_ip.as_deref()),
    ("src_endpoint_domain", |e| e.src_endpoint_domain.as_deref()),
    ("http_user_agent", |e| e.http_user_agent.as_deref()),
    ("api_request_uid", |e| e.api_request_uid.as_deref()),
    ("metadata_uid", |e| Some(&e.metadata_uid)),
    ("metadata_event_type", |e| e.metadata_event_type.as_deref()),
    ("metadata_product_version", |e| {
        e.metadata_product_version.as_deref()
    }),
    ("request_data", |e| e.request_data.as_deref()),
    ("response_data", |e| e.response_data.as_deref()),
    ("additional_data", |e| e.additional_data.as_deref()),
];

fn text_slot(name: &str) -> Option<usize> {
    CIEM_TEXT.iter().position(|(n, _)| *n == name)
}

/// What one row costs besides its text: 4 offset bytes per text column, the fixed-width
/// columns (with the source id), the validity bits.
const ROW_BYTES: usize = 4 * (CIEM_TEXT.len() + 1) + 100;
/// What one resource costs besides its text.
const RESOURCE_BYTES: usize = 4 * 4;

/// The rows of one partition of a batch, as columns.
pub struct CiemColumns {
    time_ms: Vec<i64>,
    class_uid: Vec<i32>,
    category_uid: Vec<i32>,
    activity_id: Vec<i32>,
    status_id: Vec<i32>,
    is_read_only: Vec<Option<bool>>,
    session_is_mfa: Vec<Option<bool>>,
    session_created_ms: Vec<Option<i64>>,
    ingest_time_ms: Vec<i64>,
    origin_partition: Vec<Option<i32>>,
    origin_position: Vec<i64>,
    /// `origin_source` of each row, as an index into `sources`: rows mostly share a few.
    source_ids: Vec<u32>,
    sources: Vec<Arc<str>>,
    source_index: HashMap<Arc<str>, u32>,
    text: Vec<TextColumn>,
    /// List offsets of `resources` (starting at 0) and the items' uid, type, name, account_uid.
    resource_ends: Vec<i32>,
    resource: [TextColumn; 4],
}

impl CiemColumns {
    fn new() -> Self {
        CiemColumns {
            time_ms: Vec::new(),
            class_uid: Vec::new(),
            category_uid: Vec::new(),
            activity_id: Vec::new(),
            status_id: Vec::new(),
            is_read_only: Vec::new(),
            session_is_mfa: Vec::new(),
            session_created_ms: Vec::new(),
            ingest_time_ms: Vec::new(),
            origin_partition: Vec::new(),
            origin_position: Vec::new(),
            source_ids: Vec::new(),
            sources: Vec::new(),
            source_index: HashMap::new(),
            text: CIEM_TEXT.iter().map(|_| TextColumn::new()).collect(),
            resource_ends: vec![0],
            resource: std::array::from_fn(|_| TextColumn::new()),
        }
    }

    pub fn len(&self) -> usize {
        self.time_ms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.time_ms.is_empty()
    }

    /// Appends `e`; returns the bytes it added.
    fn push(&mut self, e: &CiemEvent<'_>) -> usize {
        self.time_ms.push(e.time_ms);
        self.class_uid.push(e.class_uid);
        self.category_uid.push(e.category_uid);
        self.activity_id.push(e.activity_id);
        self.status_id.push(e.status_id);
        self.is_read_only.push(e.is_read_only);
        self.session_is_mfa.push(e.actor_session_is_mfa);
        self.session_created_ms
            .push(e.actor_session_created_time_ms);
        self.ingest_time_ms.push(e.ingest_time_ms);
        self.origin_partition.push(e.origin.partition);
        self.origin_position.push(e.origin.position);
        // The source's text is kept once, but written out for every row.
        let source = &e.origin.source;
        let mut bytes = ROW_BYTES + source.len();
        let id = match self.source_ids.last() {
            // Rows of one input share the same `Arc`: the text is compared only when not.
            Some(&last)
                if Arc::ptr_eq(&self.sources[last as usize], source)
                    || *self.sources[last as usize] == **source =>
            {
                last
            }
            _ => match self.source_index.get(source) {
                Some(&id) => id,
                None => {
                    let id = u32::try_from(self.sources.len()).unwrap_or(u32::MAX);
                    self.sources.push(source.clone());
                    self.source_index.insert(source.clone(), id);
                    id
                }
            },
        };
        self.source_ids.push(id);
        for (c, (_, get)) in self.text.iter_mut().zip(CIEM_TEXT.iter()) {
            let v = get(e);
            bytes += v.map_or(0, str::len);
            c.push(v);
        }
        let [uid, kind, name, account] = &mut self.resource;
        for r in &e.resources {
            for (c, v) in [
                (&mut *uid, &r.uid),
                (&mut *kind, &r.kind),
                (&mut *name, &r.name),
                (&mut *account, &r.account_uid),
            ] {
                bytes += v.as_deref().map_or(0, str::len);
                c.push(v.as_deref());
            }
            bytes += RESOURCE_BYTES;
        }
        let items = i32::try_from(uid.len()).unwrap_or(i32::MAX);
        self.resource_ends.push(items);
        bytes
    }

    /// The rows in write order, time then source then position (`None` when they already
    /// are in it: nothing to move). Rows that are equal in all three (records of one Kafka
    /// message) keep their arrival order.
    fn write_order(&self) -> Option<Vec<u32>> {
        // Sources by rank in byte order, so rows compare as integers.
        let mut by_name: Vec<u32> = (0..self.sources.len() as u32).collect();
        by_name.sort_unstable_by(|&a, &b| self.sources[a as usize].cmp(&self.sources[b as usize]));
        let mut rank = vec![0u32; self.sources.len()];
        for (r, &id) in by_name.iter().enumerate() {
            rank[id as usize] = r as u32;
        }
        let key = |i: usize| {
            (
                self.time_ms[i],
                rank[self.source_ids[i] as usize],
                self.origin_position[i],
            )
        };
        let n = self.len();
        if (1..n).all(|i| key(i - 1) <= key(i)) {
            return None;
        }
        // The row index last: keys are distinct, so an unstable sort keeps arrival order.
        let mut keys: Vec<(i64, u32, i64, u32)> = (0..n)
            .map(|i| {
                let (time, source, position) = key(i);
                (time, source, position, i as u32)
            })
            .collect();
        keys.sort_unstable();
        Some(keys.into_iter().map(|k| k.3).collect())
    }

    /// `origin_source`, in `order`.
    fn source_column(&self, order: Option<&[u32]>) -> TextColumn {
        let mut out = TextColumn::new();
        let mut push = |id: u32| out.push(Some(&self.sources[id as usize]));
        match order {
            Some(order) => order
                .iter()
                .for_each(|&i| push(self.source_ids[i as usize])),
            None => self.source_ids.iter().for_each(|&id| push(id)),
        }
        out
    }

    /// The rows as an Arrow record batch of `ciem_events`, sorted by time. The buffers move
    /// into the batch; sorting, if needed, copies each column once.
    pub fn into_record_batch(self) -> Result<RecordBatch, SinkError> {
        let schema = crate::schema::ciem_arrow_schema();
        let order = self.write_order();
        let source = self.source_column(order.as_deref());
        let CiemColumns {
            time_ms,
            class_uid,
            category_uid,
            activity_id,
            status_id,
            is_read_only,
            session_is_mfa,
            session_created_ms,
            ingest_time_ms,
            origin_partition,
            origin_position,
            text,
            resource_ends,
            resource,
            ..
        } = self;
        fn take<T: Copy>(v: Vec<T>, order: Option<&[u32]>) -> Vec<T> {
            match order {
                Some(order) => order.iter().map(|&i| v[i as usize]).collect(),
                None => v,
            }
        }
        let order = order.as_deref();
        let ts = |v: Vec<i64>| -> ArrayRef {
            Arc::new(TimestampMillisecondArray::from(take(v, order)).with_timezone("UTC"))
        };
        let ints = |v: Vec<i32>| -> ArrayRef { Arc::new(Int32Array::from(take(v, order))) };
        let type_uid: Vec<i64> = class_uid
            .iter()
            .zip(&activity_id)
            .map(|(c, a)| crate::event::type_uid(*c, *a))
            .collect();
        let n = time_ms.len();
        let mut text: Vec<Option<TextColumn>> = text.into_iter().map(Some).collect();
        let mut resources = Some((resource_ends, resource));
        let mut source = Some(source);
        let mut fixed: HashMap<&str, ArrayRef> = HashMap::from([
            ("time", ts(time_ms)),
            ("class_uid", ints(class_uid)),
            ("category_uid", ints(category_uid)),
            ("activity_id", ints(activity_id)),
            (
                "type_uid",
                Arc::new(Int64Array::from(take(type_uid, order))) as ArrayRef,
            ),
            ("status_id", ints(status_id)),
            ("severity_id", Arc::new(Int32Array::from(vec![1; n]))),
            (
                "is_read_only",
                Arc::new(BooleanArray::from(take(is_read_only, order))),
            ),
            (
                "actor_session_is_mfa",
                Arc::new(BooleanArray::from(take(session_is_mfa, order))),
            ),
            (
                "actor_session_created_time",
                Arc::new(
                    TimestampMillisecondArray::from(take(session_created_ms, order))
                        .with_timezone("UTC"),
                ),
            ),
            ("ingest_time", ts(ingest_time_ms)),
            (
                "origin_partition",
                Arc::new(Int32Array::from(take(origin_partition, order))),
            ),
            (
                "origin_position",
                Arc::new(Int64Array::from(take(origin_position, order))),
            ),
        ]);
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
        for f in schema.fields() {
            let name = f.name().as_str();
            let column: ArrayRef = if let Some(i) = text_slot(name) {
                let c = text[i]
                    .take()
                    .ok_or_else(|| SinkError::Schema(format!("column {name} appears twice")))?;
                // Gathered one column at a time, so at most one extra column is in memory.
                let c = match order {
                    Some(order) => c.gather(order),
                    None => c,
                };
                Arc::new(c.finish(name)?)
            } else if name == "origin_source" {
                let c = source
                    .take()
                    .ok_or_else(|| SinkError::Schema(format!("column {name} appears twice")))?;
                Arc::new(c.finish(name)?)
            } else if name == "resources" {
                let (ends, items) = resources
                    .take()
                    .ok_or_else(|| SinkError::Schema("resources appears twice".into()))?;
                let DataType::List(item) = f.data_type() else {
                    return Err(SinkError::Schema(format!(
                        "resources must be a list, not {}",
                        f.data_type()
                    )));
                };
                resources_array(item, ends, items, order)?
            } else {
                fixed.remove(name).ok_or_else(|| {
                    SinkError::Schema(format!(
                        "column {name:?} in schemas/ciem_events.json has no encoder"
                    ))
                })?
            };
            columns.push(column);
        }
        RecordBatch::try_new(schema, columns).map_err(|e| SinkError::Schema(e.to_string()))
    }
}

/// `resources`: a list of (uid, type, name, account_uid) structs, null when empty.
fn resources_array(
    item: &arrow::datatypes::FieldRef,
    ends: Vec<i32>,
    items: [TextColumn; 4],
    order: Option<&[u32]>,
) -> Result<ArrayRef, SinkError> {
    let DataType::Struct(fields) = item.data_type() else {
        return Err(SinkError::Schema("resources items must be structs".into()));
    };
    let (ends, items) = match order {
        None => (ends, items),
        Some(order) => {
            // The items of each row, in the rows' new order.
            let mut item_order = Vec::with_capacity(items[0].len());
            let mut new_ends = Vec::with_capacity(ends.len());
            new_ends.push(0i32);
            for &row in order {
                let (start, end) = (ends[row as usize], ends[row as usize + 1]);
                item_order.extend(start as u32..end as u32);
                new_ends.push(i32::try_from(item_order.len()).unwrap_or(i32::MAX));
            }
            let items = [0, 1, 2, 3].map(|k| items[k].gather(&item_order));
            (new_ends, items)
        }
    };
    if ends.last().is_some_and(|&n| n == i32::MAX) {
        return Err(SinkError::Schema(
            "too many resources in one partition of a batch".into(),
        ));
    }
    let present: BooleanBuffer = ends.windows(2).map(|w| w[1] > w[0]).collect();
    let nulls = NullBuffer::new(present);
    let nulls = (nulls.null_count() > 0).then_some(nulls);
    let [uid, kind, name, account] = items;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(uid.finish("resources.uid")?),
        Arc::new(kind.finish("resources.type")?),
        Arc::new(name.finish("resources.name")?),
        Arc::new(account.finish("resources.account_uid")?),
    ];
    let items = StructArray::try_new(fields.clone(), columns, None)
        .map_err(|e| SinkError::Schema(format!("resources: {e}")))?;
    let list = ListArray::try_new(
        item.clone(),
        OffsetBuffer::new(ScalarBuffer::from(ends)),
        Arc::new(items),
        nulls,
    )
    .map_err(|e| SinkError::Schema(format!("resources: {e}")))?;
    Ok(Arc::new(list))
}

/// The partition an event belongs to: provider, account, UTC day.
type PartitionKey = (Provider, Option<String>, i64);

/// A batch's events, by partition directory (`ciem_events/provider=…/account=…/date=…`).
#[derive(Default)]
pub struct EventColumns {
    partitions: Vec<(String, CiemColumns)>,
    /// Partition keys seen, to their entry in `partitions` (distinct keys can share a
    /// directory: an empty and a missing account are both `unknown`; cut values).
    keys: HashMap<PartitionKey, usize>,
    /// The last event's key and entry: consecutive events mostly share one.
    last: Option<(PartitionKey, usize)>,
    rows: usize,
    bytes: usize,
    by_provider: Vec<(Provider, u64)>,
}

impl EventColumns {
    /// Copies `e` into its partition's columns; returns the bytes that added.
    pub fn push(&mut self, e: &CiemEvent<'_>) -> usize {
        let day = e.time_ms.div_euclid(86_400_000);
        let account = e.cloud_account_uid.as_deref();
        let slot = match &self.last {
            Some(((p, a, d), slot))
                if *p == e.cloud_provider && *d == day && a.as_deref() == account =>
            {
                *slot
            }
            _ => self.slot((e.cloud_provider, account.map(str::to_string), day)),
        };
        let bytes = self.partitions[slot].1.push(e);
        self.rows += 1;
        self.bytes += bytes;
        match self
            .by_provider
            .iter_mut()
            .find(|(p, _)| *p == e.cloud_provider)
        {
            Some((_, n)) => *n += 1,
            None => self.by_provider.push((e.cloud_provider, 1)),
        }
        bytes
    }

    fn slot(&mut self, key: PartitionKey) -> usize {
        let slot = match self.keys.get(&key) {
            Some(&slot) => slot,
            None => {
                let dir = super::partition_dir((key.0, key.1.as_deref(), key.2));
                let slot = match self.partitions.iter().position(|(d, _)| *d == dir) {
                    Some(slot) => slot,
                    None => {
                        self.partitions.push((dir, CiemColumns::new()));
                        self.partitions.len() - 1
                    }
                };
                self.keys.insert(key.clone(), slot);
                slot
            }
        };
        self.last = Some((key, slot));
        slot
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The bytes the pending rows take.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Rows per provider.
    pub fn by_provider(&self) -> impl Iterator<Item = (Provider, u64)> + '_ {
        self.by_provider.iter().copied()
    }

    /// The partition directories, in no particular order.
    pub fn dirs(&self) -> impl Iterator<Item = &str> {
        self.partitions.iter().map(|(d, _)| d.as_str())
    }

    /// The partitions, by directory.
    pub fn into_partitions(self) -> Vec<(String, CiemColumns)> {
        let mut partitions = self.partitions;
        partitions.sort_by(|a, b| a.0.cmp(&b.0));
        partitions
    }
}

impl std::fmt::Debug for EventColumns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventColumns")
            .field("rows", &self.rows)
            .field("bytes", &self.bytes)
            .field("partitions", &self.dirs().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::{Outcome, Stamp, cloudtrail};
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Int64Type, TimestampMillisecondType};

    fn event(
        source: &str,
        position: i64,
        time: &str,
        account: &str,
        bucket: Option<&str>,
    ) -> CiemEvent<'static> {
        let resources = match bucket {
            Some(b) => {
                format!(r#","resources":[{{"ARN":"arn:aws:s3:::{b}","type":"AWS::S3::Bucket"}}]"#)
            }
            None => String::new(),
        };
        let record = format!(
            r#"{{"eventVersion":"1.09","eventTime":"{time}","eventSource":"s3.amazonaws.com","eventName":"GetObject","awsRegion":"us-east-1","eventID":"{source}-{position}","recipientAccountId":"{account}","userIdentity":{{"type":"IAMUser","arn":"arn:aws:iam::{account}:user/u"}}{resources}}}"#
        );
        let stamp = Stamp {
            source: Arc::from(source),
            partition: None,
            ingest_time_ms: 0,
        };
        match cloudtrail::normalize(record.as_bytes(), &stamp, position) {
            Outcome::Event(e) => e.into_owned(),
            _ => panic!("not an event: {record}"),
        }
    }

    fn column<'a>(batch: &'a RecordBatch, name: &str) -> &'a ArrayRef {
        batch.column_by_name(name).expect(name)
    }

    /// Rows of one partition come out in time order (then source, then position), with their
    /// own resources and nulls, whatever order they arrived in; other partitions apart.
    #[test]
    fn partitions_are_written_in_time_order_with_their_resources() {
        let mut batch = EventColumns::default();
        let pushed = [
            event(
                "b.json",
                0,
                "2024-03-10T10:00:02Z",
                "111122223333",
                Some("late"),
            ),
            event("a.json", 5, "2024-03-10T10:00:00Z", "111122223333", None),
            event(
                "a.json",
                1,
                "2024-03-10T10:00:00Z",
                "111122223333",
                Some("first"),
            ),
            event(
                "c.json",
                0,
                "2024-03-10T09:00:00Z",
                "444455556666",
                Some("other"),
            ),
            event("a.json", 2, "2024-03-10T10:00:01Z", "111122223333", None),
        ];
        for e in &pushed {
            assert!(batch.push(e) > 0);
        }
        assert_eq!(batch.len(), 5);
        let partitions = batch.into_partitions();
        let dirs: Vec<&str> = partitions.iter().map(|(d, _)| d.as_str()).collect();
        assert_eq!(
            dirs,
            [
                "ciem_events/provider=aws/account=111122223333/date=2024-03-10",
                "ciem_events/provider=aws/account=444455556666/date=2024-03-10",
            ]
        );
        let mut partitions = partitions.into_iter();
        let (_, first) = partitions.next().unwrap();
        let rb = first.into_record_batch().unwrap();
        assert_eq!(rb.num_rows(), 4);
        let ids: Vec<&str> = column(&rb, "metadata_uid")
            .as_string::<i32>()
            .iter()
            .flatten()
            .collect();
        assert_eq!(ids, ["a.json-1", "a.json-5", "a.json-2", "b.json-0"]);
        let times = column(&rb, "time").as_primitive::<TimestampMillisecondType>();
        assert!(times.values().windows(2).all(|w| w[0] <= w[1]));
        let positions = column(&rb, "origin_position").as_primitive::<Int64Type>();
        assert_eq!(positions.values().to_vec(), vec![1, 5, 2, 0]);
        let resources = column(&rb, "resources").as_list::<i32>();
        let uids: Vec<Option<String>> = (0..rb.num_rows())
            .map(|i| {
                (!resources.is_null(i)).then(|| {
                    let items = resources.value(i);
                    let items = items.as_struct();
                    items.column(0).as_string::<i32>().value(0).to_string()
                })
            })
            .collect();
        assert_eq!(
            uids,
            [
                Some("arn:aws:s3:::first".to_string()),
                None,
                None,
                Some("arn:aws:s3:::late".to_string())
            ]
        );
        assert!(column(&rb, "api_response_error").is_null(0));

        // Rows that arrive in order are written as they are.
        let (_, second) = partitions.next().unwrap();
        let rb = second.into_record_batch().unwrap();
        let ids: Vec<&str> = column(&rb, "metadata_uid")
            .as_string::<i32>()
            .iter()
            .flatten()
            .collect();
        assert_eq!(ids, ["c.json-0"]);
    }
}
