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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    pub name: String,
    pub version: String,
    pub description: String,
    pub partitioning: Vec<String>,
    #[serde(default)]
    pub sort_by: Vec<String>,
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

    /// The Arrow schema for this table, with the version in its metadata.
    pub fn arrow_schema(&self) -> Schema {
        let fields: Vec<Field> = self
            .columns
            .iter()
            .map(|c| Field::new(&c.name, data_type(&c.ty), c.nullable))
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

/// Every table by name (`auditlake schema --table NAME`).
pub fn table(name: &str) -> Option<(&'static TableSpec, &'static str)> {
    match name {
        "ciem_events" => Some((ciem(), CIEM_SCHEMA_JSON)),
        "dead_letters" => Some((dead_letters(), DEAD_LETTER_SCHEMA_JSON)),
        "asset_changes" => Some((asset_changes(), ASSET_CHANGES_SCHEMA_JSON)),
        "asset_inventory" => Some((asset_inventory(), ASSET_INVENTORY_SCHEMA_JSON)),
        _ => None,
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
        ] {
            assert_eq!(
                spec.to_markdown(),
                md,
                "schemas/{file}.md is stale: regenerate with `auditlake schema --table {file} --markdown > schemas/{file}.md`"
            );
        }
    }
}
