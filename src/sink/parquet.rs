//! Arrow record batches from rows, and Parquet files from batches (ZSTD, sorted by time,
//! bounded row groups). Column order and types come from `schemas/*.json`.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Int32Array, Int64Array, ListBuilder, RecordBatch, StringArray,
    StringBuilder, StructBuilder, TimestampMillisecondArray,
};
use arrow::datatypes::Schema;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use super::SinkError;
use crate::assets::{AssetChange, InventoryItem};
use crate::event::{CiemEvent, DeadLetter};
use crate::schema::{
    TableSpec, asset_changes_arrow_schema, asset_inventory_arrow_schema, ciem_arrow_schema,
    dead_letter_arrow_schema, resource_fields,
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

/// A string column, sized up front (growing the value buffer by doubling costs a lot of
/// copying for the large JSON columns).
fn strings<'a>(rows: &'a [&CiemEvent], f: impl Fn(&'a CiemEvent) -> Option<&'a str>) -> ArrayRef {
    let bytes = rows.iter().map(|e| f(e).map_or(0, str::len)).sum();
    let mut b = StringBuilder::with_capacity(rows.len(), bytes);
    for e in rows {
        b.append_option(f(e));
    }
    Arc::new(b.finish())
}

fn ts(values: impl Iterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(
        values
            .collect::<TimestampMillisecondArray>()
            .with_timezone("UTC"),
    )
}

fn resources(rows: &[&CiemEvent]) -> ArrayRef {
    let fields = resource_fields();
    let builders: Vec<Box<dyn arrow::array::ArrayBuilder>> = (0..fields.len())
        .map(|_| Box::new(StringBuilder::new()) as Box<dyn arrow::array::ArrayBuilder>)
        .collect();
    let mut list = ListBuilder::new(StructBuilder::new(fields, builders));
    for e in rows {
        if e.resources.is_empty() {
            list.append(false);
            continue;
        }
        let item = list.values();
        for r in &e.resources {
            for (i, v) in [&r.uid, &r.kind, &r.name, &r.account_uid]
                .into_iter()
                .enumerate()
            {
                if let Some(b) = item.field_builder::<StringBuilder>(i) {
                    b.append_option(v.as_deref());
                }
            }
            item.append(true);
        }
        list.append(true);
    }
    Arc::new(list.finish())
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
        "activity_name" => strings(rows, |e| Some(e.activity_name())),
        "type_uid" => Arc::new(rows.iter().map(|e| e.type_uid()).collect::<Int64Array>()),
        "status_id" => i32s(|e| e.status_id),
        "status" => strings(rows, |e| Some(e.status())),
        "severity_id" => i32s(|_| 1),
        "cloud_provider" => strings(rows, |e| Some(e.cloud_provider.as_str())),
        "cloud_account_uid" => strings(rows, |e| e.cloud_account_uid.as_deref()),
        "cloud_region" => strings(rows, |e| e.cloud_region.as_deref()),
        "api_service_name" => strings(rows, |e| e.api_service_name.as_deref()),
        "service" => strings(rows, |e| e.service.as_deref()),
        "api_operation" => strings(rows, |e| e.api_operation.as_deref()),
        "action" => strings(rows, |e| e.action.as_deref()),
        "api_version" => strings(rows, |e| e.api_version.as_deref()),
        "is_read_only" => Arc::new(
            rows.iter()
                .map(|e| e.is_read_only)
                .collect::<BooleanArray>(),
        ),
        "api_response_error" => strings(rows, |e| e.api_response_error.as_deref()),
        "api_response_message" => strings(rows, |e| e.api_response_message.as_deref()),
        "actor_user_type" => strings(rows, |e| e.actor_user_type.as_deref()),
        "actor_user_uid" => strings(rows, |e| e.actor_user_uid.as_deref()),
        "actor_user_uid_alt" => strings(rows, |e| e.actor_user_uid_alt.as_deref()),
        "actor_user_name" => strings(rows, |e| e.actor_user_name.as_deref()),
        "actor_user_account_uid" => strings(rows, |e| e.actor_user_account_uid.as_deref()),
        "actor_credential_uid" => strings(rows, |e| e.actor_credential_uid.as_deref()),
        "actor_credential_kind" => strings(rows, |e| e.actor_credential_kind),
        "actor_session_issuer" => strings(rows, |e| e.actor_session_issuer.as_deref()),
        "actor_session_is_mfa" => Arc::new(
            rows.iter()
                .map(|e| e.actor_session_is_mfa)
                .collect::<BooleanArray>(),
        ),
        "actor_session_created_time" => ts(rows.iter().map(|e| e.actor_session_created_time_ms)),
        "actor_invoked_by" => strings(rows, |e| e.actor_invoked_by.as_deref()),
        "src_endpoint_ip" => strings(rows, |e| e.src_endpoint_ip.as_deref()),
        "src_endpoint_domain" => strings(rows, |e| e.src_endpoint_domain.as_deref()),
        "http_user_agent" => strings(rows, |e| e.http_user_agent.as_deref()),
        "api_request_uid" => strings(rows, |e| e.api_request_uid.as_deref()),
        "metadata_uid" => strings(rows, |e| Some(e.metadata_uid.as_str())),
        "metadata_event_type" => strings(rows, |e| e.metadata_event_type.as_deref()),
        "metadata_product_version" => strings(rows, |e| e.metadata_product_version.as_deref()),
        "resources" => resources(rows),
        "request_data" => strings(rows, |e| e.request_data.as_deref()),
        "response_data" => strings(rows, |e| e.response_data.as_deref()),
        "additional_data" => strings(rows, |e| e.additional_data.as_deref()),
        "ingest_time" => ts(rows.iter().map(|e| Some(e.ingest_time_ms))),
        "origin_source" => strings(rows, |e| Some(&*e.origin.source)),
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
    let schema = ciem_arrow_schema();
    let columns = schema
        .fields()
        .iter()
        .map(|f| ciem_column(f.name(), rows))
        .collect::<Result<_, _>>()?;
    batch(schema, columns)
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
    for chunk in rows.chunks(options.row_group_rows.clamp(1, 32 * 1024)) {
        writer
            .write(&ciem_batch(chunk)?)
            .map_err(|e| SinkError::parquet(path, e))?;
    }
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
