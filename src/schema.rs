//! The CIEM event schema. `schemas/ciem_events.json` is the single source of truth: the
//! Arrow/Parquet schema is built from it, `auditlake schema` prints it, and the human document
//! `schemas/ciem_events.md` is rendered from it (a test keeps the checked-in copy in sync).

use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, Field, Fields, Schema, TimeUnit};
use serde::Deserialize;

/// The machine-readable schema file, embedded at build time.
pub const CIEM_SCHEMA_JSON: &str = include_str!("../schemas/ciem_events.json");
/// The dead-letter dataset's schema file.
pub const DEAD_LETTER_SCHEMA_JSON: &str = include_str!("../schemas/dead_letters.json");
/// The asset-change dataset's schema file.
pub const ASSET_CHANGES_SCHEMA_JSON: &str = include_str!("../schemas/asset_changes.json");
/// The asset-inventory dataset's schema file.
pub const ASSET_INVENTORY_SCHEMA_JSON: &str = include_str!("../schemas/asset_inventory.json");
/// The entitlements dataset's schema file.
pub const ENTITLEMENTS_SCHEMA_JSON: &str = include_str!("../schemas/entitlements.json");
/// The CIEM findings dataset's schema file.
pub const CIEM_FINDINGS_SCHEMA_JSON: &str = include_str!("../schemas/ciem_findings.json");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    pub name: String,
    pub version: String,
    pub description: String,
    pub partitioning: Vec<String>,
    #[serde(default)]
    pub sort_by: Vec<String>,
    /// Columns whose JSON text the redaction rules ([`crate::redact`]) apply to;
    /// the Markdown document lists the rules after the columns.
    #[serde(default)]
    pub redacted: Vec<String>,
    pub columns: Vec<ColumnSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: String,
    pub nullable: bool,
    #[serde(default)]
    pub ocsf: String,
    #[serde(default)]
    pub aws: String,
    #[serde(default)]
    pub tencent: String,
    pub doc: String,
}

impl TableSpec {
    fn parse(text: &str, file: &str) -> Self {
        // The files are compiled in, so a malformed file is a build defect caught by every test.
        match serde_json::from_str(text) {
            Ok(spec) => spec,
            Err(e) => panic!("embedded {file} is invalid: {e}"),
        }
    }

    /// The Arrow schema for this table, with the version in its metadata and every field's
    /// id (`PARQUET:field_id`, written into the Parquet files): the top-level columns are
    /// 1, 2, … in the schema file's order, the fields nested in them follow, numbered in that
    /// same order. Columns are only ever appended to a schema file, so ids never change; the
    /// Iceberg tables ([`crate::sink::iceberg`]) use these ids.
    pub fn arrow_schema(&self) -> Schema {
        let mut next_nested = i32::try_from(self.columns.len()).unwrap_or(i32::MAX) + 1;
        let fields: Vec<Field> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let id = i32::try_from(i + 1).unwrap_or(i32::MAX);
                let ty = match c.ty.as_str() {
                    "resources" => {
                        let item = with_field_id(
                            Field::new_struct(
                                "item",
                                resource_fields()
                                    .iter()
                                    .enumerate()
                                    .map(|(j, f)| {
                                        with_field_id(
                                            f.as_ref().clone(),
                                            next_nested + 1 + i32::try_from(j).unwrap_or(0),
                                        )
                                    })
                                    .collect::<Vec<_>>(),
                                true,
                            ),
                            next_nested,
                        );
                        next_nested += 1 + i32::try_from(resource_fields().len()).unwrap_or(0);
                        DataType::List(Arc::new(item))
                    }
                    other => data_type(other),
                };
                with_field_id(Field::new(&c.name, ty, c.nullable), id)
            })
            .collect();
        let mut metadata = std::collections::HashMap::new();
        metadata.insert("auditlake.table".to_string(), self.name.clone());
        metadata.insert("auditlake.schema_version".to_string(), self.version.clone());
        Schema::new_with_metadata(fields, metadata)
    }

    /// The human document: every column, its type, OCSF attribute and source field per cloud.
    pub fn to_markdown(&self) -> String {
        let mut out = format!(
            "# `{}` — schema version {}\n\n{}\n\n\
             Generated from `schemas/{}.json` by `auditlake schema --markdown`; do not edit by hand.\n\n\
             Partitioned as `{}`; rows sorted by {} within a file.\n\n\
             | column | type | null | OCSF | AWS CloudTrail | Tencent CloudAudit | meaning |\n\
             |---|---|---|---|---|---|---|\n",
            self.name,
            self.version,
            self.description,
            self.name,
            self.partitioning
                .iter()
                .map(|p| format!("{p}=…"))
                .collect::<Vec<_>>()
                .join("/"),
            if self.sort_by.is_empty() {
                "nothing".to_string()
            } else {
                self.sort_by.join(", ")
            },
        );
        let cell = |s: &str| {
            if s.is_empty() {
                "—".to_string()
            } else {
                s.replace('|', "\\|")
            }
        };
        for c in &self.columns {
            out.push_str(&format!(
                "| `{}` | {} | {} | {} | {} | {} | {} |\n",
                c.name,
                type_caption(&c.ty),
                if c.nullable { "yes" } else { "no" },
                cell(&c.ocsf),
                cell(&c.aws),
                cell(&c.tencent),
                cell(&c.doc)
            ));
        }
        if !self.redacted.is_empty() {
            out.push('\n');
            out.push_str(&crate::redact::rules_markdown(&self.redacted));
        }
        out
    }
}

fn type_caption(ty: &str) -> &str {
    match ty {
        "timestamp_ms_utc" => "timestamp (ms, UTC)",
        "utf8" => "string",
        "resources" => "list<struct<uid, type, name, account_uid>>",
        other => other,
    }
}

/// Maps the schema file's type names to Arrow types. Unknown names are a defect in the file.
fn data_type(ty: &str) -> DataType {
    match ty {
        "utf8" => DataType::Utf8,
        "int32" => DataType::Int32,
        "int64" => DataType::Int64,
        "bool" => DataType::Boolean,
        "timestamp_ms_utc" => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        "resources" => DataType::List(Arc::new(Field::new_struct("item", resource_fields(), true))),
        other => panic!("schema file uses unknown type {other:?}"),
    }
}

/// `field` with its Parquet/Iceberg field id.
fn with_field_id(field: Field, id: i32) -> Field {
    let mut metadata = field.metadata().clone();
    metadata.insert("PARQUET:field_id".to_string(), id.to_string());
    field.with_metadata(metadata)
}

/// Fields of one element of the `resources` list.
pub fn resource_fields() -> Fields {
    Fields::from(vec![
        Field::new("uid", DataType::Utf8, true),
        Field::new("type", DataType::Utf8, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("account_uid", DataType::Utf8, true),
    ])
}

pub fn ciem() -> &'static TableSpec {
    static SPEC: OnceLock<TableSpec> = OnceLock::new();
    SPEC.get_or_init(|| TableSpec::parse(CIEM_SCHEMA_JSON, "schemas/ciem_events.json"))
}

pub fn dead_letters() -> &'static TableSpec {
    static SPEC: OnceLock<TableSpec> = OnceLock::new();
    SPEC.get_or_init(|| TableSpec::parse(DEAD_LETTER_SCHEMA_JSON, "schemas/dead_letters.json"))
}

pub fn ciem_arrow_schema() -> Arc<Schema> {
    static SCHEMA: OnceLock<Arc<Schema>> = OnceLock::new();
    SCHEMA
        .get_or_init(|| Arc::new(ciem().arrow_schema()))
        .clone()
}

pub fn dead_letter_arrow_schema() -> Arc<Schema> {
    static SCHEMA: OnceLock<Arc<Schema>> = OnceLock::new();
    SCHEMA
        .get_or_init(|| Arc::new(dead_letters().arrow_schema()))
        .clone()
}

pub fn asset_changes() -> &'static TableSpec {
    static SPEC: OnceLock<TableSpec> = OnceLock::new();
    SPEC.get_or_init(|| TableSpec::parse(ASSET_CHANGES_SCHEMA_JSON, "schemas/asset_changes.json"))
}

pub fn asset_inventory() -> &'static TableSpec {
    static SPEC: OnceLock<TableSpec> = OnceLock::new();
    SPEC.get_or_init(|| {
        TableSpec::parse(ASSET_INVENTORY_SCHEMA_JSON, "schemas/asset_inventory.json")
    })
}

pub fn asset_changes_arrow_schema() -> Arc<Schema> {
    static SCHEMA: OnceLock<Arc<Schema>> = OnceLock::new();
    SCHEMA
        .get_or_init(|| Arc::new(asset_changes().arrow_schema()))
        .clone()
}

pub fn asset_inventory_arrow_schema() -> Arc<Schema> {
    static SCHEMA: OnceLock<Arc<Schema>> = OnceLock::new();
    SCHEMA
        .get_or_init(|| Arc::new(asset_inventory().arrow_schema()))
        .clone()
}

pub fn entitlements() -> &'static TableSpec {
    static SPEC: OnceLock<TableSpec> = OnceLock::new();
    SPEC.get_or_init(|| TableSpec::parse(ENTITLEMENTS_SCHEMA_JSON, "schemas/entitlements.json"))
}

pub fn ciem_findings() -> &'static TableSpec {
    static SPEC: OnceLock<TableSpec> = OnceLock::new();
    SPEC.get_or_init(|| TableSpec::parse(CIEM_FINDINGS_SCHEMA_JSON, "schemas/ciem_findings.json"))
}

pub fn entitlements_arrow_schema() -> Arc<Schema> {
    static SCHEMA: OnceLock<Arc<Schema>> = OnceLock::new();
    SCHEMA
        .get_or_init(|| Arc::new(entitlements().arrow_schema()))
        .clone()
}

pub fn ciem_findings_arrow_schema() -> Arc<Schema> {
    static SCHEMA: OnceLock<Arc<Schema>> = OnceLock::new();
    SCHEMA
        .get_or_init(|| Arc::new(ciem_findings().arrow_schema()))
        .clone()
}

/// Every table by name (`auditlake schema --table NAME`).
pub fn table(name: &str) -> Option<(&'static TableSpec, &'static str)> {
    match name {
        "ciem_events" => Some((ciem(), CIEM_SCHEMA_JSON)),
        "dead_letters" => Some((dead_letters(), DEAD_LETTER_SCHEMA_JSON)),
        "asset_changes" => Some((asset_changes(), ASSET_CHANGES_SCHEMA_JSON)),
        "asset_inventory" => Some((asset_inventory(), ASSET_INVENTORY_SCHEMA_JSON)),
        "entitlements" => Some((entitlements(), ENTITLEMENTS_SCHEMA_JSON)),
        "ciem_findings" => Some((ciem_findings(), CIEM_FINDINGS_SCHEMA_JSON)),
        _ => None,
    }
}

/// The lake's datasets, in the order the DDL files list them.
pub fn tables() -> [&'static TableSpec; 6] {
    [
        ciem(),
        dead_letters(),
        asset_changes(),
        asset_inventory(),
        entitlements(),
        ciem_findings(),
    ]
}

/// `schemas/duckdb_views.sql`: one DuckDB view per dataset over the lake root held in the
/// `lake` variable (`auditlake schema --ddl duckdb`).
pub fn duckdb_views() -> String {
    let mut out = String::from(
        "-- DuckDB views over an auditlake lake: ciem_events, dead_letters, asset_changes, asset_inventory,\n\
         -- entitlements, ciem_findings.\n\
         -- Generated from schemas/*.json by `auditlake schema --ddl duckdb`; do not edit by hand\n\
         -- (a test fails when this file and the schema files disagree).\n\
         --\n\
         -- Set the lake root, then run this file (tested with DuckDB 2.0.1; older releases may lack\n\
         -- read_parquet's allow_empty):\n\
         --   SET VARIABLE lake = '/data/lake';   -- or 's3://bucket/prefix' with the httpfs extension\n\
         --   .read schemas/duckdb_views.sql      -- the CLI; from Python, execute the file's text\n\
         -- (without the variable DuckDB refuses the views: \"read_parquet\" cannot take NULL list).\n\
         --\n\
         -- The views read the files when queried: they see files committed later, and the lake that\n\
         -- `lake` names at that moment. Columns have the schema's types; the partition columns\n\
         -- (provider, account, date) are strings, so account ids keep their leading zeros. A dataset\n\
         -- without files yet (asset_inventory, entitlements, ciem_findings before the first account sync)\n\
         -- is an empty view, and a file from an older schema version reads NULL for the columns it\n\
         -- lacks.\n",
    );
    for spec in tables() {
        out.push('\n');
        out.push_str(&spec.duckdb_view());
    }
    out
}

/// `schemas/athena.sql`: one Athena/Glue external table per dataset under `location` (the lake
/// root on S3), with partition projection (`auditlake schema --ddl athena`).
pub fn athena_ddl(location: &str) -> String {
    let mut out = format!(
        "-- Athena (engine v3) / Glue tables over an auditlake lake on S3 at {location}.\n\
         -- Generated from schemas/*.json by `auditlake schema --ddl athena [--location s3://bucket/prefix]`;\n\
         -- do not edit by hand (a test fails when this file and the schema files disagree).\n\
         -- Athena runs one statement at a time: run each CREATE on its own.\n\
         --\n\
         -- Partitions are found by projection, not by crawlers or MSCK REPAIR: provider is an enum,\n\
         -- date a daily date range, and account is injected, so every query must name the account\n\
         -- (WHERE account = '123456789012', or account IN (...)). To query all accounts at once, make\n\
         -- it an enum: 'projection.account.type' = 'enum', 'projection.account.values' = 'id1,id2,...'.\n\
         -- Partition values are written escaped (%2F for /, a leading . as %2E, empty as unknown);\n\
         -- ordinary AWS account ids and Tencent UINs need no escaping.\n"
    );
    for spec in tables() {
        out.push('\n');
        out.push_str(&spec.athena_table(location));
    }
    out
}

impl TableSpec {
    /// This dataset's DuckDB view: a typed empty row set united by name with the files, so the
    /// view has every schema column with its schema type whether or not files exist.
    pub fn duckdb_view(&self) -> String {
        let mut cols: Vec<String> = self
            .columns
            .iter()
            .map(|c| {
                format!(
                    "NULL::{} AS {}",
                    duckdb_type(&data_type(&c.ty)),
                    duckdb_ident(&c.name)
                )
            })
            .collect();
        for p in &self.partitioning {
            cols.push(format!("NULL::VARCHAR AS {}", duckdb_ident(p)));
        }
        // read_parquet(allow_empty) yields one column `empty` when nothing matches.
        cols.push("NULL::BOOLEAN AS \"empty\"".to_string());
        format!(
            "CREATE OR REPLACE VIEW {name} AS\n\
             SELECT * EXCLUDE (\"empty\") FROM (\n    \
             SELECT\n        {cols}\n    \
             WHERE false\n    \
             UNION ALL BY NAME\n    \
             SELECT * FROM read_parquet(\n        \
             getvariable('lake') || '/{name}/{glob}*.parquet',\n        \
             hive_partitioning = true, hive_types_autocast = false,\n        \
             union_by_name = true, allow_empty = true)\n\
             );\n",
            name = self.name,
            cols = cols.join(",\n        "),
            glob = "*/".repeat(self.partitioning.len()),
        )
    }

    /// This dataset's Athena/Glue `CREATE EXTERNAL TABLE` with partition projection.
    pub fn athena_table(&self, location: &str) -> String {
        let location = location.trim_end_matches('/');
        let cols: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("`{}` {}", c.name, athena_type(&data_type(&c.ty))))
            .collect();
        let parts: Vec<String> = self
            .partitioning
            .iter()
            .map(|p| format!("`{p}` string"))
            .collect();
        let mut props = vec![("projection.enabled".to_string(), "true".to_string())];
        for p in &self.partitioning {
            let kv: &[(&str, &str)] = match p.as_str() {
                "provider" => &[
                    ("type", "enum"),
                    ("values", "aws,tencent,huawei,baidu,ctyun"),
                ],
                "account" => &[("type", "injected")],
                "date" => &[
                    ("type", "date"),
                    ("format", "yyyy-MM-dd"),
                    ("range", "2013-01-01,NOW"),
                    ("interval", "1"),
                    ("interval.unit", "DAYS"),
                ],
                other => panic!(
                    "schemas/{}.json: no projection for partition {other:?}",
                    self.name
                ),
            };
            props.extend(
                kv.iter()
                    .map(|(k, v)| (format!("projection.{p}.{k}"), v.to_string())),
            );
        }
        let template: String = self
            .partitioning
            .iter()
            .map(|p| format!("{p}=${{{p}}}/"))
            .collect();
        props.push((
            "storage.location.template".to_string(),
            format!("{location}/{}/{template}", self.name),
        ));
        let props: Vec<String> = props
            .iter()
            .map(|(k, v)| format!("  '{k}' = '{v}'"))
            .collect();
        format!(
            "CREATE EXTERNAL TABLE IF NOT EXISTS {name} (\n  {cols}\n)\n\
             PARTITIONED BY ({parts})\n\
             STORED AS PARQUET\n\
             LOCATION '{location}/{name}/'\n\
             TBLPROPERTIES (\n{props}\n);\n",
            name = self.name,
            cols = cols.join(",\n  "),
            parts = parts.join(", "),
            props = props.join(",\n"),
        )
    }
}

fn duckdb_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// DuckDB's name for an Arrow type the schema files produce.
fn duckdb_type(dt: &DataType) -> String {
    match dt {
        DataType::Utf8 => "VARCHAR".into(),
        DataType::Int32 => "INTEGER".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Timestamp(_, Some(_)) => "TIMESTAMPTZ".into(),
        DataType::List(f) => format!("{}[]", duckdb_type(f.data_type())),
        DataType::Struct(fields) => format!(
            "STRUCT({})",
            fields
                .iter()
                .map(|f| format!("{} {}", duckdb_ident(f.name()), duckdb_type(f.data_type())))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => panic!("no DuckDB type for {other:?}"),
    }
}

/// Athena's (Hive DDL) name for an Arrow type the schema files produce.
fn athena_type(dt: &DataType) -> String {
    match dt {
        DataType::Utf8 => "string".into(),
        DataType::Int32 => "int".into(),
        DataType::Int64 => "bigint".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Timestamp(_, _) => "timestamp".into(),
        DataType::List(f) => format!("array<{}>", athena_type(f.data_type())),
        DataType::Struct(fields) => format!(
            "struct<{}>",
            fields
                .iter()
                .map(|f| format!("{}:{}", f.name(), athena_type(f.data_type())))
                .collect::<Vec<_>>()
                .join(",")
        ),
        other => panic!("no Athena type for {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_files_parse_and_map_to_arrow() {
        assert_eq!(ciem_arrow_schema().fields().len(), ciem().columns.len());
        assert!(dead_letter_arrow_schema().fields().len() >= 5);
        let names: std::collections::HashSet<_> = ciem().columns.iter().map(|c| &c.name).collect();
        assert_eq!(names.len(), ciem().columns.len(), "duplicate column names");
        assert_eq!(
            asset_changes_arrow_schema().fields().len(),
            asset_changes().columns.len()
        );
        assert_eq!(
            asset_inventory_arrow_schema().fields().len(),
            asset_inventory().columns.len()
        );
    }

    #[test]
    fn asset_schema_documents_are_current() {
        for (spec, md, file) in [
            (
                asset_changes(),
                include_str!("../schemas/asset_changes.md"),
                "asset_changes",
            ),
            (
                asset_inventory(),
                include_str!("../schemas/asset_inventory.md"),
                "asset_inventory",
            ),
            (
                entitlements(),
                include_str!("../schemas/entitlements.md"),
                "entitlements",
            ),
            (
                ciem_findings(),
                include_str!("../schemas/ciem_findings.md"),
                "ciem_findings",
            ),
        ] {
            assert_eq!(
                spec.to_markdown(),
                md,
                "schemas/{file}.md is stale: regenerate with `auditlake schema --table {file} --markdown > schemas/{file}.md`"
            );
        }
    }
}
