//! Arrow record batches from rows, and Parquet files from batches (ZSTD, sorted by time,
//! bounded row groups). Column order and types come from `schemas/*.json`.

use std::fs::File;
use std::path::Path;
use std::sync::{Arc, Mutex};

use arrow::array::builder::NullBufferBuilder;
use arrow::array::{
    Array, ArrayRef, BooleanArray, Int32Array, Int64Array, ListArray, RecordBatch, StringArray,
    StructArray, TimestampMillisecondArray,
};
use arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, FieldRef, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use super::SinkError;
use crate::assets::{AssetChange, InventoryItem};
use crate::event::{CiemEvent, DeadLetter};
use crate::schema::{
    TableSpec, asset_changes_arrow_schema, asset_inventory_arrow_schema, ciem_arrow_schema,
    dead_letter_arrow_schema,
};

/// Parquet encoding settings.
#[derive(Debug, Clone, Copy)]
pub struct ParquetOptions {
    pub zstd_level: i32,
    pub row_group_rows: usize,
}

impl Default for ParquetOptions {
    fn default() -> Self {
        ParquetOptions {
            // Level 1: on the bench corpus 3 gave a 0.9 % smaller lake for 9 % more CPU.
            zstd_level: 1,
            row_group_rows: 128 * 1024,
        }
    }
}

fn ts(values: impl Iterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(
        values
            .collect::<TimestampMillisecondArray>()
            .with_timezone("UTC"),
    )
}

fn ciem_column(name: &str, rows: &[&CiemEvent]) -> Result<ArrayRef, SinkError> {
    let i32s = |f: fn(&CiemEvent) -> i32| -> ArrayRef {
        Arc::new(rows.iter().map(|e| f(e)).collect::<Int32Array>())
    };
    Ok(match name {
        "time" => ts(rows.iter().map(|e| Some(e.time_ms))),
        "class_uid" => i32s(|e| e.class_uid),
        "category_uid" => i32s(|e| e.category_uid),
        "activity_id" => i32s(|e| e.activity_id),
        "type_uid" => Arc::new(rows.iter().map(|e| e.type_uid()).collect::<Int64Array>()),
        "status_id" => i32s(|e| e.status_id),
        "severity_id" => i32s(|_| 1),
        "is_read_only" => Arc::new(
            rows.iter()
                .map(|e| e.is_read_only)
                .collect::<BooleanArray>(),
        ),
        "actor_session_is_mfa" => Arc::new(
            rows.iter()
                .map(|e| e.actor_session_is_mfa)
                .collect::<BooleanArray>(),
        ),
        "actor_session_created_time" => ts(rows.iter().map(|e| e.actor_session_created_time_ms)),
        "ingest_time" => ts(rows.iter().map(|e| Some(e.ingest_time_ms))),
        "origin_partition" => Arc::new(
            rows.iter()
                .map(|e| e.origin.partition)
                .collect::<Int32Array>(),
        ),
        "origin_position" => Arc::new(
            rows.iter()
                .map(|e| e.origin.position)
                .collect::<Int64Array>(),
        ),
        other => {
            return Err(SinkError::Schema(format!(
                "column {other:?} in schemas/ciem_events.json has no encoder"
            )));
        }
    })
}

/// Reads one text column's value from an event.
type TextOf = for<'a> fn(&'a CiemEvent) -> Option<&'a str>;

/// The CIEM text columns (except `resources`), built together in one pass over the rows.
const CIEM_TEXT: [(&str, TextOf); 32] = [
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
    ("metadata_uid", |e| Some(e.metadata_uid.as_str())),
    ("metadata_event_type", |e| e.metadata_event_type.as_deref()),
    ("metadata_product_version", |e| {
        e.metadata_product_version.as_deref()
    }),
    ("request_data", |e| e.request_data.as_deref()),
    ("response_data", |e| e.response_data.as_deref()),
    ("additional_data", |e| e.additional_data.as_deref()),
    ("origin_source", |e| Some(&*e.origin.source)),
];

/// A string column whose buffers are kept from one chunk to the next: allocating (and having
/// the kernel zero) the large JSON columns afresh for every file cost ~5 % of a replay.
struct TextColumn {
    values: Vec<u8>,
    offsets: Vec<i32>,
    nulls: NullBufferBuilder,
    /// More than `i32::MAX` bytes were appended: the chunk cannot be encoded.
    overflow: bool,
}

impl TextColumn {
    fn new() -> Self {
        TextColumn {
            values: Vec::new(),
            offsets: Vec::new(),
            nulls: NullBufferBuilder::new(0),
            overflow: false,
        }
    }

    fn start(&mut self, rows: usize) {
        self.values.clear();
        self.offsets.clear();
        self.offsets.reserve(rows + 1);
        self.offsets.push(0);
        self.nulls = NullBufferBuilder::new(rows);
        self.overflow = false;
    }

    #[inline]
    fn push(&mut self, value: Option<&str>) {
        match value {
            Some(v) => {
                self.values.extend_from_slice(v.as_bytes());
                self.nulls.append_non_null();
            }
            None => self.nulls.append_null(),
        }
        match i32::try_from(self.values.len()) {
            Ok(end) => self.offsets.push(end),
            Err(_) => {
                self.overflow = true;
                self.offsets.push(i32::MAX);
            }
        }
    }

    fn finish(&mut self, name: &str) -> Result<StringArray, SinkError> {
        if self.overflow {
            return Err(SinkError::Schema(format!(
                "column {name}: more than 2 GiB of text in one chunk"
            )));
        }
        let offsets = OffsetBuffer::new(ScalarBuffer::from(std::mem::take(&mut self.offsets)));
        let values = Buffer::from_vec(std::mem::take(&mut self.values));
        StringArray::try_new(offsets, values, self.nulls.finish())
            .map_err(|e| SinkError::Schema(format!("column {name}: {e}")))
    }

    /// Takes back the buffers of an array built by [`TextColumn::finish`] once the writer is
    /// done with it (if nothing else still holds them).
    fn reclaim(&mut self, array: ArrayRef) {
        if array.data_type() != &DataType::Utf8 {
            return;
        }
        let data = array.to_data();
        drop(array);
        let (offsets, values, _) = StringArray::from(data).into_parts();
        if let Ok(mut v) = values.into_vec::<u8>() {
            v.clear();
            self.values = v;
        }
        if let Ok(mut o) = offsets.into_inner().into_inner().into_vec::<i32>() {
            o.clear();
            self.offsets = o;
        }
    }
}

/// The reusable buffers of the CIEM text columns, one set per writing thread.
struct CiemBuffers {
    text: Vec<TextColumn>,
    /// The fields of `resources` items: uid, type, name, account_uid.
    resource: [TextColumn; 4],
}

/// Buffers of finished writers, for the next one. Bounded: a set is kept only if small enough.
static CIEM_BUFFERS: Mutex<Vec<CiemBuffers>> = Mutex::new(Vec::new());
const KEEP_BUFFERS_UP_TO: usize = 128 << 20;

impl CiemBuffers {
    fn take() -> Self {
        CIEM_BUFFERS
            .lock()
            .ok()
            .and_then(|mut pool| pool.pop())
            .unwrap_or_else(|| CiemBuffers {
                text: CIEM_TEXT.iter().map(|_| TextColumn::new()).collect(),
                resource: std::array::from_fn(|_| TextColumn::new()),
            })
    }

    fn give_back(self) {
        let bytes: usize = self
            .text
            .iter()
            .chain(&self.resource)
            .map(|c| c.values.capacity() + 4 * c.offsets.capacity())
            .sum();
        if bytes <= KEEP_BUFFERS_UP_TO
            && let Ok(mut pool) = CIEM_BUFFERS.lock()
            && pool.len() < 2
        {
            pool.push(self);
        }
    }

    /// Takes back the text columns of a written batch.
    fn reclaim(&mut self, batch: RecordBatch) {
        let (schema, columns, _) = batch.into_parts();
        for (field, column) in schema.fields().iter().zip(columns) {
            if let Some(i) = text_slot(field.name()) {
                self.text[i].reclaim(column);
            }
        }
    }
}

/// Frees the kept buffers (at the end of a batch): between batches the memory serves the
/// rows of the next one instead (with two decoding threads, keeping them raised peak RSS by
/// ~20 MB).
pub fn release_buffers() {
    if let Ok(mut pool) = CIEM_BUFFERS.lock() {
        pool.clear();
    }
}

fn text_slot(name: &str) -> Option<usize> {
    CIEM_TEXT.iter().position(|(n, _)| *n == name)
}

/// `resources`: a list of (uid, type, name, account_uid) structs, null when empty.
fn resources(
    rows: &[&CiemEvent],
    item: &FieldRef,
    bufs: &mut CiemBuffers,
) -> Result<ArrayRef, SinkError> {
    let DataType::Struct(fields) = item.data_type() else {
        return Err(SinkError::Schema("resources items must be structs".into()));
    };
    let [uid, kind, name, account] = &mut bufs.resource;
    let items: usize = rows.iter().map(|e| e.resources.len()).sum();
    for c in [&mut *uid, &mut *kind, &mut *name, &mut *account] {
        c.start(items);
    }
    let mut offsets = Vec::with_capacity(rows.len() + 1);
    offsets.push(0i32);
    let mut nulls = NullBufferBuilder::new(rows.len());
    let mut n = 0i32;
    for e in rows {
        for r in &e.resources {
            uid.push(r.uid.as_deref());
            kind.push(r.kind.as_deref());
            name.push(r.name.as_deref());
            account.push(r.account_uid.as_deref());
        }
        n = i32::try_from(e.resources.len())
            .ok()
            .and_then(|k| n.checked_add(k))
            .ok_or_else(|| SinkError::Schema("too many resources in one chunk".into()))?;
        offsets.push(n);
        nulls.append(!e.resources.is_empty());
    }
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
        OffsetBuffer::new(ScalarBuffer::from(offsets)),
        Arc::new(items),
        nulls.finish(),
    )
    .map_err(|e| SinkError::Schema(format!("resources: {e}")))?;
    Ok(Arc::new(list))
}

/// Builds a chunk's record batch, with the text columns in `bufs`' buffers.
fn ciem_batch_in(rows: &[&CiemEvent], bufs: &mut CiemBuffers) -> Result<RecordBatch, SinkError> {
    let schema = ciem_arrow_schema();
    let text = &mut bufs.text;
    for c in text.iter_mut() {
        c.start(rows.len());
    }
    // One pass over the rows for all text columns: each (large, scattered) row is read once.
    for e in rows {
        for (c, (_, get)) in text.iter_mut().zip(CIEM_TEXT.iter()) {
            c.push(get(e));
        }
    }
    let mut columns = Vec::with_capacity(schema.fields().len());
    for f in schema.fields() {
        let name = f.name().as_str();
        let column: ArrayRef = match text_slot(name) {
            Some(i) => Arc::new(bufs.text[i].finish(name)?),
            None if name == "resources" => match f.data_type() {
                DataType::List(item) => resources(rows, item, bufs)?,
                other => {
                    return Err(SinkError::Schema(format!(
                        "resources must be a list, not {other}"
                    )));
                }
            },
            None => ciem_column(name, rows)?,
        };
        columns.push(column);
    }
    batch(schema, columns)
}

fn dead_letter_column(name: &str, rows: &[&DeadLetter]) -> Result<ArrayRef, SinkError> {
    Ok(match name {
        "ingest_time" => ts(rows.iter().map(|d| Some(d.ingest_time_ms))),
        "pipeline" => Arc::new(
            rows.iter()
                .map(|d| Some(&*d.pipeline))
                .collect::<StringArray>(),
        ),
        "origin_source" => Arc::new(
            rows.iter()
                .map(|d| Some(&*d.origin.source))
                .collect::<StringArray>(),
        ),
        "origin_partition" => Arc::new(
            rows.iter()
                .map(|d| d.origin.partition)
                .collect::<Int32Array>(),
        ),
        "origin_position" => Arc::new(
            rows.iter()
                .map(|d| d.origin.position)
                .collect::<Int64Array>(),
        ),
        "byte_offset" => Arc::new(rows.iter().map(|d| d.byte_offset).collect::<Int64Array>()),
        "line" => Arc::new(rows.iter().map(|d| d.line).collect::<Int64Array>()),
        "reason" => Arc::new(
            rows.iter()
                .map(|d| Some(d.reason.as_str()))
                .collect::<StringArray>(),
        ),
        "raw" => Arc::new(
            rows.iter()
                .map(|d| d.raw.as_deref())
                .collect::<StringArray>(),
        ),
        "raw_truncated" => Arc::new(
            rows.iter()
                .map(|d| Some(d.raw_truncated))
                .collect::<BooleanArray>(),
        ),
        other => {
            return Err(SinkError::Schema(format!(
                "column {other:?} in schemas/dead_letters.json has no encoder"
            )));
        }
    })
}

/// A string column from any rows.
fn texts<'a, T>(rows: &'a [&T], f: impl Fn(&'a T) -> Option<&'a str>) -> ArrayRef {
    Arc::new(rows.iter().map(|r| f(r)).collect::<StringArray>())
}

fn asset_change_column(name: &str, rows: &[&AssetChange]) -> Result<ArrayRef, SinkError> {
    Ok(match name {
        "time" => ts(rows.iter().map(|c| Some(c.time_ms))),
        "cloud_provider" => texts(rows, |c| Some(c.cloud_provider.as_str())),
        "cloud_account_uid" => texts(rows, |c| c.cloud_account_uid.as_deref()),
        "cloud_region" => texts(rows, |c| c.cloud_region.as_deref()),
        "resource_type" => texts(rows, |c| Some(c.resource_type.as_str())),
        "native_type" => texts(rows, |c| c.native_type.as_deref()),
        "resource_uid" => texts(rows, |c| Some(c.resource_uid.as_str())),
        "resource_name" => texts(rows, |c| c.resource_name.as_deref()),
        "change_type" => texts(rows, |c| Some(c.change_type.as_str())),
        "origin" => texts(rows, |c| Some(c.origin.as_str())),
        "action" => texts(rows, |c| c.action.as_deref()),
        "related_type" => texts(rows, |c| c.related_type.as_deref()),
        "related_uid" => texts(rows, |c| c.related_uid.as_deref()),
        "actor_user_uid" => texts(rows, |c| c.actor_user_uid.as_deref()),
        "actor_user_name" => texts(rows, |c| c.actor_user_name.as_deref()),
        "actor_credential_uid" => texts(rows, |c| c.actor_credential_uid.as_deref()),
        "source_event_id" => texts(rows, |c| c.source_event_id.as_deref()),
        "sync_run_id" => texts(rows, |c| c.sync_run_id.as_deref()),
        "before_state" => texts(rows, |c| c.before_state.as_deref()),
        "after_state" => texts(rows, |c| c.after_state.as_deref()),
        "tags" => texts(rows, |c| c.tags.as_deref()),
        "ingest_time" => ts(rows.iter().map(|c| Some(c.ingest_time_ms))),
        other => {
            return Err(SinkError::Schema(format!(
                "column {other:?} in schemas/asset_changes.json has no encoder"
            )));
        }
    })
}

fn inventory_column(name: &str, rows: &[&InventoryItem]) -> Result<ArrayRef, SinkError> {
    Ok(match name {
        "run_id" => texts(rows, |i| Some(i.run_id.as_str())),
        "run_time" => ts(rows.iter().map(|i| Some(i.run_time_ms))),
        "account_name" => texts(rows, |i| Some(i.account_name.as_str())),
        "cloud_provider" => texts(rows, |i| Some(i.cloud_provider.as_str())),
        "cloud_account_uid" => texts(rows, |i| i.cloud_account_uid.as_deref()),
        "cloud_region" => texts(rows, |i| i.cloud_region.as_deref()),
        "resource_type" => texts(rows, |i| Some(i.resource_type.as_str())),
        "native_type" => texts(rows, |i| i.native_type.as_deref()),
        "resource_uid" => texts(rows, |i| Some(i.resource_uid.as_str())),
        "resource_name" => texts(rows, |i| i.resource_name.as_deref()),
        "status" => texts(rows, |i| i.status.as_deref()),
        "created_time" => ts(rows.iter().map(|i| i.created_time_ms)),
        "attributes" => texts(rows, |i| i.attributes.as_deref()),
        "tags" => texts(rows, |i| i.tags.as_deref()),
        other => {
            return Err(SinkError::Schema(format!(
                "column {other:?} in schemas/asset_inventory.json has no encoder"
            )));
        }
    })
}

pub fn asset_change_batch(rows: &[&AssetChange]) -> Result<RecordBatch, SinkError> {
    let schema = asset_changes_arrow_schema();
    let columns = schema
        .fields()
        .iter()
        .map(|f| asset_change_column(f.name(), rows))
        .collect::<Result<_, _>>()?;
    batch(schema, columns)
}

pub fn inventory_batch(rows: &[&InventoryItem]) -> Result<RecordBatch, SinkError> {
    let schema = asset_inventory_arrow_schema();
    let columns = schema
        .fields()
        .iter()
        .map(|f| inventory_column(f.name(), rows))
        .collect::<Result<_, _>>()?;
    batch(schema, columns)
}

fn batch(schema: Arc<Schema>, columns: Vec<ArrayRef>) -> Result<RecordBatch, SinkError> {
    RecordBatch::try_new(schema, columns).map_err(|e| SinkError::Schema(e.to_string()))
}

pub fn ciem_batch(rows: &[&CiemEvent]) -> Result<RecordBatch, SinkError> {
    let mut bufs = CiemBuffers::take();
    let batch = ciem_batch_in(rows, &mut bufs);
    bufs.give_back();
    batch
}

pub fn dead_letter_batch(rows: &[&DeadLetter]) -> Result<RecordBatch, SinkError> {
    let schema = dead_letter_arrow_schema();
    let columns = schema
        .fields()
        .iter()
        .map(|f| dead_letter_column(f.name(), rows))
        .collect::<Result<_, _>>()?;
    batch(schema, columns)
}

fn properties(
    options: ParquetOptions,
    table: &TableSpec,
    sorted_by_time: bool,
) -> Result<WriterProperties, SinkError> {
    let level = ZstdLevel::try_new(options.zstd_level)
        .map_err(|e| SinkError::Config(format!("zstd level: {e}")))?;
    let metadata = vec![
        KeyValue::new("auditlake.table".to_string(), table.name.clone()),
        KeyValue::new(
            "auditlake.schema_version".to_string(),
            table.version.clone(),
        ),
    ];
    let mut props = WriterProperties::builder()
        .set_key_value_metadata(Some(metadata))
        // Unique or near-unique text: a dictionary only costs time, page statistics on JSON
        // text are never useful for pruning.
        .set_column_dictionary_enabled("metadata_uid".into(), false)
        .set_column_dictionary_enabled("api_request_uid".into(), false)
        .set_column_dictionary_enabled("origin_position".into(), false)
        .set_column_dictionary_enabled("raw".into(), false)
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_row_count(Some(options.row_group_rows.max(1)))
        .set_created_by(format!("auditlake {}", env!("CARGO_PKG_VERSION")));
    for json in ["request_data", "response_data", "additional_data", "raw"] {
        props = props
            .set_column_dictionary_enabled(json.into(), false)
            .set_column_statistics_enabled(json.into(), EnabledStatistics::None);
    }
    if sorted_by_time {
        props = props.set_sorting_columns(Some(vec![SortingColumn {
            column_idx: 0,
            descending: false,
            nulls_first: false,
        }]));
    }
    Ok(props.build())
}

/// Writes `rows` (already sorted) to `path` and fsyncs it. Returns the byte size.
pub fn write_ciem_file(
    path: &Path,
    rows: &[&CiemEvent],
    options: ParquetOptions,
) -> Result<u64, SinkError> {
    let file = File::create(path).map_err(|e| SinkError::io("create", path, e))?;
    let mut writer = ArrowWriter::try_new(
        file,
        ciem_arrow_schema(),
        Some(properties(options, crate::schema::ciem(), true)?),
    )
    .map_err(|e| SinkError::parquet(path, e))?;
    let mut bufs = CiemBuffers::take();
    for chunk in rows.chunks(options.row_group_rows.clamp(1, 32 * 1024)) {
        let batch = ciem_batch_in(chunk, &mut bufs)?;
        writer
            .write(&batch)
            .map_err(|e| SinkError::parquet(path, e))?;
        bufs.reclaim(batch);
    }
    bufs.give_back();
    finish(writer, path)
}

pub fn write_dead_letter_file(
    path: &Path,
    rows: &[&DeadLetter],
    options: ParquetOptions,
) -> Result<u64, SinkError> {
    let file = File::create(path).map_err(|e| SinkError::io("create", path, e))?;
    let mut writer = ArrowWriter::try_new(
        file,
        dead_letter_arrow_schema(),
        Some(properties(options, crate::schema::dead_letters(), false)?),
    )
    .map_err(|e| SinkError::parquet(path, e))?;
    writer
        .write(&dead_letter_batch(rows)?)
        .map_err(|e| SinkError::parquet(path, e))?;
    finish(writer, path)
}

/// Writes asset changes (already sorted by time) to `path` and fsyncs it.
pub fn write_asset_change_file(
    path: &Path,
    rows: &[&AssetChange],
    options: ParquetOptions,
) -> Result<u64, SinkError> {
    let file = File::create(path).map_err(|e| SinkError::io("create", path, e))?;
    let mut writer = ArrowWriter::try_new(
        file,
        asset_changes_arrow_schema(),
        Some(properties(options, crate::schema::asset_changes(), true)?),
    )
    .map_err(|e| SinkError::parquet(path, e))?;
    writer
        .write(&asset_change_batch(rows)?)
        .map_err(|e| SinkError::parquet(path, e))?;
    finish(writer, path)
}

/// Writes inventory rows to `path` and fsyncs it.
pub fn write_inventory_file(
    path: &Path,
    rows: &[&InventoryItem],
    options: ParquetOptions,
) -> Result<u64, SinkError> {
    let file = File::create(path).map_err(|e| SinkError::io("create", path, e))?;
    let mut writer = ArrowWriter::try_new(
        file,
        asset_inventory_arrow_schema(),
        Some(properties(
            options,
            crate::schema::asset_inventory(),
            false,
        )?),
    )
    .map_err(|e| SinkError::parquet(path, e))?;
    writer
        .write(&inventory_batch(rows)?)
        .map_err(|e| SinkError::parquet(path, e))?;
    finish(writer, path)
}

fn finish(writer: ArrowWriter<File>, path: &Path) -> Result<u64, SinkError> {
    let file = writer
        .into_inner()
        .map_err(|e| SinkError::parquet(path, e))?;
    file.sync_all()
        .map_err(|e| SinkError::io("fsync", path, e))?;
    let size = file
        .metadata()
        .map_err(|e| SinkError::io("stat", path, e))?
        .len();
    Ok(size)
}
