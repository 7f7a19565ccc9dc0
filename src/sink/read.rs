//! Reading the lake back: the events of one account over a period, for the CIEM findings.

use std::fs::File;
use std::path::Path;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Int32Type, TimestampMillisecondType};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::{SinkError, partition_value};
use crate::ciem::usage::EventFacts;
use crate::event::Provider;
use crate::normalize::date_of_ms;

/// The columns read, in this order.
const COLUMNS: [&str; 9] = [
    "time",
    "actor_user_type",
    "actor_user_uid",
    "actor_user_uid_alt",
    "actor_session_issuer",
    "actor_credential_uid",
    "action",
    "api_operation",
    "status_id",
];

/// Calls `f` with every event of `provider`/`account_uid` in the lake whose date partition is
/// `since_ms`'s day or later. Returns the number of files read. A file that cannot be read is
/// an error naming it (a lake being written is read consistently: only committed names match).
pub fn account_events(
    lake: &Path,
    provider: Provider,
    account_uid: &str,
    since_ms: i64,
    mut f: impl FnMut(&EventFacts),
) -> Result<usize, SinkError> {
    let dir = lake
        .join("ciem_events")
        .join(format!("provider={}", provider.as_str()))
        .join(format!("account={}", partition_value(Some(account_uid))));
    let first_day = format!("date={}", date_of_ms(since_ms));
    let days = match std::fs::read_dir(&dir) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(SinkError::io("list", &dir, e)),
    };
    let mut day_dirs: Vec<_> = days
        .filter_map(Result::ok)
        .filter(|d| {
            d.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with("date=") && *n >= *first_day.as_str())
        })
        .map(|d| d.path())
        .collect();
    day_dirs.sort();
    let mut files = 0;
    for day in day_dirs {
        let entries = std::fs::read_dir(&day).map_err(|e| SinkError::io("list", &day, e))?;
        let mut paths: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
            .collect();
        paths.sort();
        for path in paths {
            read_file(&path, &mut f)?;
            files += 1;
        }
    }
    Ok(files)
}

fn read_file(path: &Path, f: &mut impl FnMut(&EventFacts)) -> Result<(), SinkError> {
    let file = File::open(path).map_err(|e| SinkError::io("open", path, e))?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| SinkError::parquet(path, e))?;
    let schema = builder.parquet_schema();
    let indices: Vec<usize> = schema
        .columns()
        .iter()
        .enumerate()
        .filter(|(_, c)| COLUMNS.contains(&c.name()))
        .map(|(i, _)| i)
        .collect();
    let mask = ProjectionMask::leaves(schema, indices);
    let reader = builder
        .with_projection(mask)
        .build()
        .map_err(|e| SinkError::parquet(path, e))?;
    for batch in reader {
        let batch = batch.map_err(|e| SinkError::Schema(format!("{}: {e}", path.display())))?;
        facts(&batch, f);
    }
    Ok(())
}

fn facts(batch: &RecordBatch, f: &mut impl FnMut(&EventFacts)) {
    let text = |name: &str| {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_string_opt::<i32>())
    };
    let Some(time) = batch
        .column_by_name("time")
        .and_then(|c| c.as_primitive_opt::<TimestampMillisecondType>())
    else {
        return;
    };
    let cols: Vec<_> = COLUMNS[1..8].iter().map(|n| text(n)).collect();
    let status = batch
        .column_by_name("status_id")
        .and_then(|c| c.as_primitive_opt::<Int32Type>());
    let get = |i: usize, row: usize| {
        cols[i]
            .filter(|c| c.is_valid(row))
            .map(|c| c.value(row).to_string())
    };
    for row in 0..batch.num_rows() {
        if !time.is_valid(row) {
            continue;
        }
        f(&EventFacts {
            time_ms: time.value(row),
            actor_user_type: get(0, row),
            actor_user_uid: get(1, row),
            actor_user_uid_alt: get(2, row),
            actor_session_issuer: get(3, row),
            actor_credential_uid: get(4, row),
            action: get(5, row),
            api_operation: get(6, row),
            succeeded: status.is_some_and(|s| s.is_valid(row) && s.value(row) == 1),
        });
    }
}
