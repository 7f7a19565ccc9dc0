//! Arrow record batches from rows, and Parquet files from batches (ZSTD, sorted by time,
//! bounded row groups). Column order and types come from `schemas/*.json`.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use super::SinkError;
use super::columns::CiemColumns;
use crate::assets::{AssetChange, InventoryItem};
use crate::ciem::rows::{EntitlementRow, Finding};
use crate::event::DeadLetter;
use crate::schema::{
    TableSpec, asset_changes_arrow_schema, asset_inventory_arrow_schema,
    ciem_findings_arrow_schema, dead_letter_arrow_schema, entitlements_arrow_schema,
};

/// Parquet encoding settings.
#[derive(Debug, Clone, Copy)]
pub struct ParquetOptions {
    pub zstd_level: i32,
    pub row_group_rows: usize,
    /// Timestamps in microseconds instead of milliseconds (the Iceberg format: its only
    /// precision).
    pub timestamps_us: bool,
}

impl Default for ParquetOptions {
    fn default() -> Self {
        ParquetOptions {
            // Level 1: on the bench corpus 3 gave a 0.9 % smaller lake for 9 % more CPU.
            zstd_level: 1,
            row_group_rows: 128 * 1024,
            timestamps_us: false,
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

/// A dataset's rows: their table, and how one of its columns encodes from them.
pub trait Rows: Sized {
    /// Files of this dataset are sorted by their first column, `time`.
    const SORTED_BY_TIME: bool = false;
    fn table() -> &'static TableSpec;
    fn arrow_schema() -> Arc<Schema>;
    /// The column named `name`, or None when the schema file has a column this type does not
    /// encode (a defect, reported as a schema error).
    fn column(name: &str, rows: &[&Self]) -> Option<ArrayRef>;
}

/// The record batch of `rows`, columns in the schema file's order.
pub fn record_batch<T: Rows>(rows: &[&T]) -> Result<RecordBatch, SinkError> {
    let schema = T::arrow_schema();
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            T::column(f.name(), rows).ok_or_else(|| {
                SinkError::Schema(format!(
                    "column {:?} in schemas/{}.json has no encoder",
                    f.name(),
                    T::table().name
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    RecordBatch::try_new(schema, columns).map_err(|e| SinkError::Schema(e.to_string()))
}

impl Rows for DeadLetter {
    fn table() -> &'static TableSpec {
        crate::schema::dead_letters()
    }
    fn arrow_schema() -> Arc<Schema> {
        dead_letter_arrow_schema()
    }
    fn column(name: &str, rows: &[&Self]) -> Option<ArrayRef> {
        Some(match name {
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
            _ => return None,
        })
    }
}

/// A string column from any rows.
fn texts<'a, T>(rows: &'a [&T], f: impl Fn(&'a T) -> Option<&'a str>) -> ArrayRef {
    Arc::new(rows.iter().map(|r| f(r)).collect::<StringArray>())
}

impl Rows for AssetChange {
    const SORTED_BY_TIME: bool = true;
    fn table() -> &'static TableSpec {
        crate::schema::asset_changes()
    }
    fn arrow_schema() -> Arc<Schema> {
        asset_changes_arrow_schema()
    }
    fn column(name: &str, rows: &[&Self]) -> Option<ArrayRef> {
        Some(match name {
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
            _ => return None,
        })
    }
}

impl Rows for InventoryItem {
    fn table() -> &'static TableSpec {
        crate::schema::asset_inventory()
    }
    fn arrow_schema() -> Arc<Schema> {
        asset_inventory_arrow_schema()
    }
    fn column(name: &str, rows: &[&Self]) -> Option<ArrayRef> {
        Some(match name {
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
            _ => return None,
        })
    }
}

fn int32s<T>(rows: &[&T], f: impl Fn(&T) -> Option<i32>) -> ArrayRef {
    Arc::new(rows.iter().map(|r| f(r)).collect::<Int32Array>())
}

fn bools<T>(rows: &[&T], f: impl Fn(&T) -> bool) -> ArrayRef {
    Arc::new(rows.iter().map(|r| Some(f(r))).collect::<BooleanArray>())
}

impl Rows for EntitlementRow {
    fn table() -> &'static TableSpec {
        crate::schema::entitlements()
    }
    fn arrow_schema() -> Arc<Schema> {
        entitlements_arrow_schema()
    }
    fn column(name: &str, rows: &[&Self]) -> Option<ArrayRef> {
        Some(match name {
            "run_id" => texts(rows, |e| Some(e.run_id.as_str())),
            "run_time" => ts(rows.iter().map(|e| Some(e.run_time_ms))),
            "account_name" => texts(rows, |e| Some(e.account_name.as_str())),
            "cloud_provider" => texts(rows, |e| Some(e.cloud_provider.as_str())),
            "cloud_account_uid" => texts(rows, |e| e.cloud_account_uid.as_deref()),
            "principal_type" => texts(rows, |e| Some(e.principal_type)),
            "principal_uid" => texts(rows, |e| Some(e.principal_uid.as_str())),
            "principal_name" => texts(rows, |e| Some(e.principal_name.as_str())),
            "via" => texts(rows, |e| Some(e.via)),
            "via_uid" => texts(rows, |e| e.via_uid.as_deref()),
            "policy_uid" => texts(rows, |e| Some(e.policy_uid.as_str())),
            "policy_name" => texts(rows, |e| Some(e.policy_name.as_str())),
            "policy_type" => texts(rows, |e| Some(e.policy_type)),
            "policy_version" => texts(rows, |e| e.policy_version.as_deref()),
            "statement_index" => int32s(rows, |e| e.statement_index),
            "statement_sid" => texts(rows, |e| e.statement_sid.as_deref()),
            "effect" => texts(rows, |e| e.effect),
            "action" => texts(rows, |e| e.action.as_deref()),
            "not_action" => bools(rows, |e| e.not_action),
            "resource" => texts(rows, |e| e.resource.as_deref()),
            "not_resource" => bools(rows, |e| e.not_resource),
            "condition" => texts(rows, |e| e.condition.as_deref()),
            "trusted_principal" => texts(rows, |e| e.trusted_principal.as_deref()),
            "policy_error" => texts(rows, |e| e.policy_error.as_deref()),
            _ => return None,
        })
    }
}

impl Rows for Finding {
    fn table() -> &'static TableSpec {
        crate::schema::ciem_findings()
    }
    fn arrow_schema() -> Arc<Schema> {
        ciem_findings_arrow_schema()
    }
    fn column(name: &str, rows: &[&Self]) -> Option<ArrayRef> {
        Some(match name {
            "run_id" => texts(rows, |f| Some(f.run_id.as_str())),
            "computed_time" => ts(rows.iter().map(|f| Some(f.computed_time_ms))),
            "account_name" => texts(rows, |f| Some(f.account_name.as_str())),
            "cloud_provider" => texts(rows, |f| Some(f.cloud_provider.as_str())),
            "cloud_account_uid" => texts(rows, |f| f.cloud_account_uid.as_deref()),
            "finding_uid" => texts(rows, |f| Some(f.finding_uid.as_str())),
            "kind" => texts(rows, |f| Some(f.kind)),
            "principal_type" => texts(rows, |f| f.principal_type.as_deref()),
            "principal_uid" => texts(rows, |f| f.principal_uid.as_deref()),
            "principal_name" => texts(rows, |f| f.principal_name.as_deref()),
            "resource_uid" => texts(rows, |f| f.resource_uid.as_deref()),
            "detail" => texts(rows, |f| Some(f.detail.as_str())),
            "last_activity_time" => ts(rows.iter().map(|f| f.last_activity_time_ms)),
            "first_seen" => ts(rows.iter().map(|f| Some(f.first_seen_ms))),
            "last_seen" => ts(rows.iter().map(|f| Some(f.last_seen_ms))),
            "tracking_period_days" => int32s(rows, |f| Some(f.tracking_period_days)),
            "catalog" => texts(rows, |f| f.catalog.as_deref()),
            _ => return None,
        })
    }
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
        // Times (sorted) and record positions (increasing runs): deltas are small, a
        // dictionary of them is not.
        .set_column_dictionary_enabled("time".into(), false)
        .set_column_encoding("time".into(), Encoding::DELTA_BINARY_PACKED)
        .set_column_encoding("origin_position".into(), Encoding::DELTA_BINARY_PACKED)
        .set_column_dictionary_enabled("raw".into(), false)
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_row_count(Some(options.row_group_rows.max(1)))
        .set_created_by(format!("auditlake {}", env!("CARGO_PKG_VERSION")));
    for json in ["request_data", "response_data", "additional_data", "raw"] {
        props = props
            .set_column_dictionary_enabled(json.into(), false)
            .set_column_statistics_enabled(json.into(), EnabledStatistics::None);
    }
    // Min/max of ids and free text prune nothing (they are not clustered), and comparing every
    // value to the running min and max cost ~2 % of a replay.
    for text in [
        "metadata_uid",
        "api_request_uid",
        "api_response_message",
        "http_user_agent",
        "source_event_id",
        "reason",
    ] {
        props = props.set_column_statistics_enabled(text.into(), EnabledStatistics::None);
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

/// Writes one partition's rows, sorted by time, to `path` and fsyncs it. Returns the byte size.
pub fn write_ciem_file(
    path: &Path,
    rows: CiemColumns,
    options: ParquetOptions,
) -> Result<u64, SinkError> {
    write_batch(
        path,
        rows.into_record_batch()?,
        crate::schema::ciem(),
        true,
        options,
    )
}

/// Writes rows of a dataset (sorted by time already, if the dataset is) to `path` and fsyncs
/// it. Returns the byte size.
pub fn write_rows_file<T: Rows>(
    path: &Path,
    rows: &[&T],
    options: ParquetOptions,
) -> Result<u64, SinkError> {
    write_batch(
        path,
        record_batch(rows)?,
        T::table(),
        T::SORTED_BY_TIME,
        options,
    )
}

fn write_batch(
    path: &Path,
    batch: RecordBatch,
    table: &TableSpec,
    sorted_by_time: bool,
    options: ParquetOptions,
) -> Result<u64, SinkError> {
    let batch = if options.timestamps_us {
        to_micros(batch)?
    } else {
        batch
    };
    let file = File::create(path).map_err(|e| SinkError::io("create", path, e))?;
    let mut writer = ArrowWriter::try_new(
        file,
        batch.schema(),
        Some(properties(options, table, sorted_by_time)?),
    )
    .map_err(|e| SinkError::parquet(path, e))?;
    writer
        .write(&batch)
        .map_err(|e| SinkError::parquet(path, e))?;
    drop(batch);
    finish(writer, path)
}

/// `schema` with its millisecond timestamps as microseconds (Iceberg's only precision),
/// metadata and field ids kept.
pub fn micros_schema(schema: &Schema) -> Schema {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Timestamp(TimeUnit::Millisecond, tz) => f
                .as_ref()
                .clone()
                .with_data_type(DataType::Timestamp(TimeUnit::Microsecond, tz.clone())),
            _ => f.as_ref().clone(),
        })
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

/// The batch with its millisecond timestamp columns cast to microseconds.
fn to_micros(batch: RecordBatch) -> Result<RecordBatch, SinkError> {
    let schema = Arc::new(micros_schema(&batch.schema()));
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(c.clone())
            } else {
                arrow::compute::cast(c, f.data_type())
                    .map_err(|e| SinkError::Schema(format!("{}: {e}", f.name())))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema, columns).map_err(|e| SinkError::Schema(e.to_string()))
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
