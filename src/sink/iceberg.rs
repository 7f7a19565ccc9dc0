//! The lake as Apache Iceberg tables (`[sink] format = "iceberg"`): the same Parquet files as
//! the Hive layout, registered in Iceberg tables through a catalog, whose atomic swap of the
//! table metadata is the commit point of a batch.
//!
//! Each dataset (`ciem_events`, `dead_letters`, `asset_changes`, `asset_inventory`,
//! `entitlements`, `ciem_findings`) is one table of the namespace, with the columns and field
//! ids of `schemas/*.json` ([`crate::schema::TableSpec::arrow_schema`]), partitioned as the
//! Hive layout is (`provider` = identity of `cloud_provider`, `account` = identity of
//! `cloud_account_uid`, `date` = day of the dataset's time) and sorted by that time.
//!
//! A batch is committed by one fast append per table it touches. Every append carries, in its
//! snapshot summary, the batch id (`auditlake.batch`) and the input it covers
//! (`auditlake.segments`, JSON): on restart a batch the journal left open but the catalog
//! holds is rolled forward instead of removed, and any process can read what input the
//! tables already hold ([`IcebergTables::committed`]).
//!
//! Catalog: the SQL catalog (SQLite file in the lake by default, or PostgreSQL for several
//! hosts) of the `iceberg-catalog-sql` crate. Storage: the local file system.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use iceberg::io::LocalFsStorageFactory;
use iceberg::spec::{
    DataContentType, DataFileBuilder, DataFileFormat, Literal, NullOrder, Schema, SortDirection,
    SortField, SortOrder, Struct, Transform, UnboundPartitionSpec,
};
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::{Catalog, CatalogBuilder, NamespaceIdent, TableCreation, TableIdent};
use iceberg_catalog_sql::{
    SQL_CATALOG_PROP_BIND_STYLE, SQL_CATALOG_PROP_URI, SQL_CATALOG_PROP_WAREHOUSE, SqlBindStyle,
    SqlCatalog, SqlCatalogBuilder,
};
use serde::Deserialize;

use super::journal::{Segment, UnitState};
use super::lake::CommittedFile;
use super::{SinkError, block_on};
use crate::schema::TableSpec;

/// Snapshot summary property: the batch id of an append.
pub const BATCH_PROPERTY: &str = "auditlake.batch";
/// Snapshot summary property: the input segments an append covers (JSON list).
pub const SEGMENTS_PROPERTY: &str = "auditlake.segments";

/// `[sink.iceberg]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IcebergConfig {
    /// The SQL catalog's database: `sqlite://<file>` or `postgres://user@host/db`. Default:
    /// `sqlite://<lake>/_auditlake/iceberg/catalog.db`, created when missing.
    #[serde(default)]
    pub catalog_uri: Option<String>,
    /// Where the tables' metadata and manifests go. Default `<lake>/iceberg`.
    #[serde(default)]
    pub warehouse: Option<PathBuf>,
    /// The namespace of the tables. Default `auditlake`.
    #[serde(default)]
    pub namespace: Option<String>,
}

impl IcebergConfig {
    fn uri(&self, lake: &Path) -> String {
        self.catalog_uri.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                lake.join("_auditlake/iceberg/catalog.db").display()
            )
        })
    }

    fn warehouse(&self, lake: &Path) -> PathBuf {
        self.warehouse
            .clone()
            .unwrap_or_else(|| lake.join("iceberg"))
    }

    pub fn namespace(&self) -> String {
        self.namespace
            .clone()
            .unwrap_or_else(|| "auditlake".to_string())
    }
}

fn iceberg_error(what: &str, e: iceberg::Error) -> SinkError {
    SinkError::Iceberg(format!("{what}: {e}"))
}

/// The column a dataset's `date` partition and sort order come from.
fn time_column(spec: &TableSpec) -> &'static str {
    match spec.name.as_str() {
        "dead_letters" => "ingest_time",
        "asset_inventory" | "entitlements" => "run_time",
        "ciem_findings" => "computed_time",
        _ => "time",
    }
}

/// The Iceberg schema of a dataset: the Arrow schema's fields with their ids.
pub fn table_schema(spec: &TableSpec) -> Result<Schema, SinkError> {
    iceberg::arrow::arrow_schema_to_schema(&super::parquet::micros_schema(&spec.arrow_schema()))
        .map_err(|e| iceberg_error(&format!("schema of {}", spec.name), e))
}

fn field_id(schema: &Schema, name: &str) -> Result<i32, SinkError> {
    schema
        .field_by_name(name)
        .map(|f| f.id)
        .ok_or_else(|| SinkError::Schema(format!("no column {name:?} for the partition spec")))
}

/// The partition spec: the Hive layout's partitions as Iceberg transforms.
pub fn partition_spec(
    spec: &TableSpec,
    schema: &Schema,
) -> Result<UnboundPartitionSpec, SinkError> {
    let mut b = UnboundPartitionSpec::builder();
    for p in &spec.partitioning {
        let (column, transform) = match p.as_str() {
            "provider" => ("cloud_provider", Transform::Identity),
            "account" => ("cloud_account_uid", Transform::Identity),
            "date" => (time_column(spec), Transform::Day),
            other => {
                return Err(SinkError::Schema(format!(
                    "schemas/{}.json: no Iceberg partition for {other:?}",
                    spec.name
                )));
            }
        };
        b = b
            .add_partition_field(field_id(schema, column)?, p, transform)
            .map_err(|e| iceberg_error("partition spec", e))?;
    }
    Ok(b.build())
}

fn sort_order(spec: &TableSpec, schema: &Schema) -> Result<SortOrder, SinkError> {
    SortOrder::builder()
        .with_order_id(1)
        .with_sort_field(SortField {
            source_id: field_id(schema, time_column(spec))?,
            transform: Transform::Identity,
            direction: SortDirection::Ascending,
            null_order: NullOrder::First,
        })
        .build(schema)
        .map_err(|e| iceberg_error("sort order", e))
}

/// The partition tuple of a file from its Hive directory (`provider=aws/account=…/date=…`).
fn partition_of(rel: &str, spec: &TableSpec) -> Result<Struct, SinkError> {
    let dirs: HashMap<&str, &str> = rel
        .split('/')
        .filter_map(|part| part.split_once('='))
        .collect();
    spec.partitioning
        .iter()
        .map(|p| {
            let raw = dirs.get(p.as_str()).copied().ok_or_else(|| {
                SinkError::Schema(format!("{rel}: no {p}= directory for its partition"))
            })?;
            Ok(match p.as_str() {
                "date" => Some(
                    Literal::date_from_str(raw)
                        .map_err(|e| iceberg_error(&format!("{rel}: date partition {raw:?}"), e))?,
                ),
                // The Hive layout writes a missing value as `unknown`.
                _ if raw == "unknown" => None,
                _ => Some(Literal::string(percent_decode(raw))),
            })
        })
        .collect()
}

/// Undoes [`super::partition_value`]'s `%XX` escapes.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The lake's Iceberg tables in one catalog.
pub struct IcebergTables {
    rt: tokio::runtime::Runtime,
    catalog: SqlCatalog,
    namespace: NamespaceIdent,
    root: PathBuf,
    tables: BTreeMap<String, Table>,
    /// The input every writer's appends cover, from the snapshot summaries read so far.
    held: HashMap<String, UnitState>,
    /// The snapshots whose summaries are in `held`.
    read_snapshots: HashSet<i64>,
}

impl std::fmt::Debug for IcebergTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The catalog URI may hold a password: never printed.
        f.debug_struct("IcebergTables")
            .field("namespace", &self.namespace)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl IcebergTables {
    /// Connects to the catalog and creates the namespace and the tables that are missing.
    pub fn open(lake: &Path, cfg: &IcebergConfig) -> Result<Self, SinkError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| SinkError::io("start a runtime for", Path::new("Iceberg"), e))?;
        let uri = cfg.uri(lake);
        // The lake may not exist yet (its first start): the tables' files go under it.
        std::fs::create_dir_all(lake).map_err(|e| SinkError::io("create directory", lake, e))?;
        if uri.starts_with("sqlite:") {
            let dir = lake.join("_auditlake/iceberg");
            std::fs::create_dir_all(&dir)
                .map_err(|e| SinkError::io("create directory", &dir, e))?;
        }
        let warehouse = cfg.warehouse(lake);
        std::fs::create_dir_all(&warehouse)
            .map_err(|e| SinkError::io("create directory", &warehouse, e))?;
        let warehouse = std::fs::canonicalize(&warehouse)
            .map_err(|e| SinkError::io("resolve", &warehouse, e))?;
        let root = std::fs::canonicalize(lake).map_err(|e| SinkError::io("resolve", lake, e))?;
        let bind = if uri.starts_with("postgres") {
            SqlBindStyle::DollarNumeric
        } else {
            SqlBindStyle::QMark
        };
        sqlx::any::install_default_drivers();
        let namespace = NamespaceIdent::new(cfg.namespace());
        let props = HashMap::from([
            (SQL_CATALOG_PROP_URI.to_string(), uri),
            (
                SQL_CATALOG_PROP_WAREHOUSE.to_string(),
                format!("file://{}", warehouse.display()),
            ),
            (SQL_CATALOG_PROP_BIND_STYLE.to_string(), bind.to_string()),
        ]);
        let catalog = block_on(&rt, async {
            SqlCatalogBuilder::default()
                .with_storage_factory(std::sync::Arc::new(LocalFsStorageFactory))
                .load("auditlake", props)
                .await
        })
        .map_err(|e| iceberg_error("open the Iceberg catalog", e))?;
        let mut me = IcebergTables {
            rt,
            catalog,
            namespace,
            root,
            tables: BTreeMap::new(),
            held: HashMap::new(),
            read_snapshots: HashSet::new(),
        };
        me.ensure_tables()?;
        Ok(me)
    }

    fn ensure_tables(&mut self) -> Result<(), SinkError> {
        let ns = self.namespace.clone();
        let catalog = &self.catalog;
        let tables = block_on(&self.rt, async {
            if !catalog.namespace_exists(&ns).await? {
                // Another process may create it at the same moment: then it exists.
                if let Err(e) = catalog.create_namespace(&ns, HashMap::new()).await
                    && !catalog.namespace_exists(&ns).await?
                {
                    return Err(e);
                }
            }
            let mut out = BTreeMap::new();
            for spec in crate::schema::tables() {
                let ident = TableIdent::new(ns.clone(), spec.name.clone());
                let table = match catalog.load_table(&ident).await {
                    Ok(t) => t,
                    Err(_) => {
                        let creation = creation(spec).map_err(|e| {
                            iceberg::Error::new(iceberg::ErrorKind::DataInvalid, e.to_string())
                        })?;
                        match catalog.create_table(&ns, creation).await {
                            Ok(t) => t,
                            Err(e) => match catalog.load_table(&ident).await {
                                Ok(t) => t,
                                Err(_) => return Err(e),
                            },
                        }
                    }
                };
                out.insert(spec.name.clone(), table);
            }
            Ok(out)
        })
        .map_err(|e| iceberg_error("create the Iceberg tables", e))?;
        self.tables = tables;
        Ok(())
    }

    /// Appends a batch's files (paths relative to the lake root, each under its dataset's
    /// directory) to their tables, one commit per table, each recording the batch and its
    /// input in the snapshot summary. A table whose snapshots already hold the batch is
    /// skipped, so calling this again after a failure finishes the batch.
    pub fn append(
        &mut self,
        batch: &str,
        files: &[CommittedFile],
        segments: &[Segment],
    ) -> Result<(), SinkError> {
        let mut by_table: BTreeMap<&str, Vec<&CommittedFile>> = BTreeMap::new();
        for f in files {
            let dataset = f.path.split('/').next().unwrap_or_default();
            by_table.entry(dataset).or_default().push(f);
        }
        if by_table.is_empty() && !segments.is_empty() {
            // Input that held nothing to write (the end of a file, positions all skipped) is
            // committed too, as an append of no files to `ciem_events`: so every host learns
            // that the input is in the lake.
            by_table.insert("ciem_events", Vec::new());
        }
        let segments = serde_json::to_string(segments)
            .map_err(|e| SinkError::Schema(format!("segments: {e}")))?;
        for (dataset, files) in by_table {
            let (spec, _) = crate::schema::table(dataset).ok_or_else(|| {
                SinkError::Schema(format!("{dataset}: not a dataset of the lake"))
            })?;
            let table = self
                .tables
                .get(dataset)
                .ok_or_else(|| SinkError::Schema(format!("no Iceberg table for {dataset}")))?;
            // Finishing a batch a crash interrupted: the tables it already reached are skipped
            // (an append is not atomic across tables).
            if holds(table, batch) {
                continue;
            }
            let spec_id = table.metadata().default_partition_spec_id();
            let data_files = files
                .iter()
                .map(|f| {
                    DataFileBuilder::default()
                        .content(DataContentType::Data)
                        .file_path(format!("file://{}", self.root.join(&f.path).display()))
                        .file_format(DataFileFormat::Parquet)
                        .partition(partition_of(&f.path, spec)?)
                        .partition_spec_id(spec_id)
                        .record_count(f.rows as u64)
                        .file_size_in_bytes(f.bytes)
                        .build()
                        .map_err(|e| SinkError::Iceberg(format!("data file {}: {e}", f.path)))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let props = HashMap::from([
                (BATCH_PROPERTY.to_string(), batch.to_string()),
                (SEGMENTS_PROPERTY.to_string(), segments.clone()),
            ]);
            let catalog = &self.catalog;
            let committed = block_on(&self.rt, async {
                let tx = Transaction::new(table);
                let tx = tx
                    .fast_append()
                    .add_data_files(data_files)
                    .set_snapshot_properties(props)
                    .apply(tx)?;
                tx.commit(catalog).await
            })
            .map_err(|e| iceberg_error(&format!("commit to the Iceberg table {dataset}"), e))?;
            self.tables.insert(dataset.to_string(), committed);
        }
        Ok(())
    }

    /// The batch ids the tables' snapshots record (as the catalog holds them now).
    pub fn committed(&mut self) -> Result<BTreeSet<String>, SinkError> {
        let ns = self.namespace.clone();
        let catalog = &self.catalog;
        let names: Vec<String> = self.tables.keys().cloned().collect();
        let loaded = block_on(&self.rt, async {
            let mut out = BTreeMap::new();
            for name in names {
                let t = catalog
                    .load_table(&TableIdent::new(ns.clone(), name.clone()))
                    .await?;
                out.insert(name, t);
            }
            Ok::<_, iceberg::Error>(out)
        })
        .map_err(|e| iceberg_error("read the Iceberg tables", e))?;
        let mut batches = BTreeSet::new();
        for t in loaded.values() {
            batches.extend(batches_of(t).map(str::to_string));
            for s in t.metadata().snapshots() {
                if !self.read_snapshots.insert(s.snapshot_id()) {
                    continue;
                }
                let Some(text) = s.summary().additional_properties.get(SEGMENTS_PROPERTY) else {
                    continue;
                };
                match serde_json::from_str::<Vec<Segment>>(text) {
                    Ok(segments) => {
                        for seg in &segments {
                            self.held
                                .entry(seg.unit.clone())
                                .or_default()
                                .add_segment(seg);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(snapshot = s.snapshot_id(), error = %e, "snapshot summary with unreadable {SEGMENTS_PROPERTY}")
                    }
                }
            }
        }
        self.tables = loaded;
        Ok(batches)
    }

    /// What the tables hold of an input unit, as every writer committed it (read now).
    pub fn unit(&mut self, unit: &str) -> Result<Option<UnitState>, SinkError> {
        self.committed()?;
        Ok(self.held.get(unit).cloned())
    }
}

/// The tables as the lake's commit point: files stay where the lake writes them (they are
/// the table's data files), and a batch is committed by its appends.
impl super::lake::Remote for IcebergTables {
    fn put(&mut self, _rel: &str, _local: &Path) -> Result<(), SinkError> {
        Ok(())
    }

    fn delete(&mut self, _rel: &str) -> Result<(), SinkError> {
        // Files of a batch that never committed are in no table: the lake removes them.
        Ok(())
    }

    fn commit(
        &mut self,
        batch: &str,
        files: &[CommittedFile],
        segments: &[Segment],
    ) -> Result<(), SinkError> {
        self.append(batch, files, segments)
    }

    fn committed(&mut self) -> Result<BTreeSet<String>, SinkError> {
        IcebergTables::committed(self)
    }

    fn unit(&mut self, unit: &str) -> Result<Option<UnitState>, SinkError> {
        IcebergTables::unit(self, unit)
    }

    fn local_is_staging(&self) -> bool {
        false
    }
}

/// The batch ids a table's snapshots record.
fn batches_of(table: &Table) -> impl Iterator<Item = &str> {
    table
        .metadata()
        .snapshots()
        .filter_map(|s| s.summary().additional_properties.get(BATCH_PROPERTY))
        .map(String::as_str)
}

fn holds(table: &Table, batch: &str) -> bool {
    batches_of(table).any(|b| b == batch)
}

fn creation(spec: &TableSpec) -> Result<TableCreation, SinkError> {
    let schema = table_schema(spec)?;
    let partition = partition_spec(spec, &schema)?;
    let order = sort_order(spec, &schema)?;
    Ok(TableCreation::builder()
        .name(spec.name.clone())
        .schema(schema)
        .partition_spec(partition)
        .sort_order(order)
        .properties([
            ("auditlake.schema_version".to_string(), spec.version.clone()),
            // Writers of several hosts commit at once: retry on conflict for up to 5 minutes.
            ("commit.retry.num-retries".to_string(), "20".to_string()),
            (
                "commit.retry.total-timeout-ms".to_string(),
                "300000".to_string(),
            ),
        ])
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dataset_maps_to_an_iceberg_table() {
        for spec in crate::schema::tables() {
            let schema = table_schema(spec).expect("schema");
            assert_eq!(
                schema.as_struct().fields().len(),
                spec.columns.len(),
                "{}",
                spec.name
            );
            // Ids are the schema file's column positions.
            for (i, c) in spec.columns.iter().enumerate() {
                assert_eq!(
                    schema.field_by_name(&c.name).map(|f| f.id),
                    Some(i32::try_from(i + 1).expect("id"))
                );
            }
            let partition = partition_spec(spec, &schema).expect("partition spec");
            assert_eq!(partition.fields().len(), spec.partitioning.len());
            sort_order(spec, &schema).expect("sort order");
        }
    }

    /// A remote that commits a batch to its first table only, then fails: a crash between the
    /// appends of one batch.
    struct FirstTableOnly(IcebergTables);

    impl super::super::lake::Remote for FirstTableOnly {
        fn put(&mut self, _: &str, _: &Path) -> Result<(), SinkError> {
            Ok(())
        }
        fn delete(&mut self, _: &str) -> Result<(), SinkError> {
            Ok(())
        }
        fn commit(
            &mut self,
            batch: &str,
            files: &[CommittedFile],
            segments: &[Segment],
        ) -> Result<(), SinkError> {
            let first = files[0]
                .path
                .split('/')
                .next()
                .unwrap_or_default()
                .to_string();
            let only: Vec<CommittedFile> = files
                .iter()
                .filter(|f| f.path.starts_with(&first))
                .cloned()
                .collect();
            self.0.append(batch, &only, segments)?;
            Err(SinkError::Iceberg("the process died here".into()))
        }
        fn committed(&mut self) -> Result<BTreeSet<String>, SinkError> {
            self.0.committed()
        }
        fn local_is_staging(&self) -> bool {
            false
        }
    }

    fn tables_rows(tables: &mut IcebergTables) -> BTreeMap<String, Vec<(String, u64)>> {
        tables.committed().expect("load");
        tables
            .tables
            .iter()
            .map(|(name, t)| {
                let rows = t
                    .metadata()
                    .snapshots()
                    .map(|s| {
                        (
                            s.summary()
                                .additional_properties
                                .get(BATCH_PROPERTY)
                                .cloned()
                                .unwrap_or_default(),
                            s.summary()
                                .additional_properties
                                .get("added-records")
                                .and_then(|n| n.parse().ok())
                                .unwrap_or(0),
                        )
                    })
                    .collect();
                (name.clone(), rows)
            })
            .collect()
    }

    #[test]
    fn a_batch_committed_to_some_tables_is_finished_on_reopen_not_removed() {
        use crate::assets::{AssetChange, ChangeOrigin, ChangeType};
        use crate::event::{DeadLetter, Origin, Provider};
        use crate::sink::lake::{LocalLake, PendingBatch};
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let cfg = IcebergConfig::default();
        let options = crate::sink::parquet::ParquetOptions {
            timestamps_us: true,
            ..Default::default()
        };
        let origin = Origin {
            source: "in.json".into(),
            partition: None,
            position: 0,
        };
        let batch = PendingBatch {
            dead_letters: vec![DeadLetter::new(
                "p".into(),
                origin,
                "bad",
                b"{",
                100,
                1_700_000_000_000,
            )],
            asset_changes: vec![AssetChange {
                time_ms: 1_700_000_000_000,
                cloud_provider: Provider::Aws,
                cloud_account_uid: Some("123456789012".into()),
                cloud_region: None,
                resource_type: "bucket".into(),
                native_type: None,
                resource_uid: "b1".into(),
                resource_name: None,
                change_type: ChangeType::Created,
                origin: ChangeOrigin::Audit,
                action: None,
                related_type: None,
                related_uid: None,
                actor_user_uid: None,
                actor_user_name: None,
                actor_credential_uid: None,
                source_event_id: None,
                sync_run_id: None,
                before_state: None,
                after_state: None,
                tags: None,
                ingest_time_ms: 1_700_000_000_000,
            }],
            segments: vec![Segment {
                unit: "file:in".into(),
                from: 0,
                to: 2,
                complete: true,
            }],
            ..PendingBatch::default()
        };
        {
            let remote = FirstTableOnly(IcebergTables::open(root, &cfg).expect("tables"));
            let mut lake = LocalLake::open_instance(root, options, None, Some(Box::new(remote)))
                .expect("lake");
            let err = lake.commit(batch).expect_err("the commit dies half-way");
            assert!(err.to_string().contains("the process died here"), "{err}");
            // crash
        }
        let mut tables = IcebergTables::open(root, &cfg).expect("tables");
        let before = tables_rows(&mut tables);
        let started: Vec<_> = before
            .iter()
            .filter(|(_, s)| !s.is_empty())
            .map(|(n, _)| n.clone())
            .collect();
        assert_eq!(
            started,
            ["dead_letters"],
            "one table committed before the crash: {before:?}"
        );
        drop(tables);

        let lake = LocalLake::open_instance(
            root,
            options,
            None,
            Some(Box::new(IcebergTables::open(root, &cfg).expect("tables"))),
        )
        .expect("reopen");
        assert!(
            lake.unit("file:in").is_some_and(|u| u.complete),
            "the batch is recorded"
        );
        drop(lake);
        let mut tables = IcebergTables::open(root, &cfg).expect("tables");
        let after = tables_rows(&mut tables);
        for name in ["asset_changes", "dead_letters"] {
            assert_eq!(
                after[name].len(),
                1,
                "{name}: one append of the batch: {after:?}"
            );
            assert_eq!(after[name][0].1, 1, "{name}: its one row");
            assert_eq!(
                after[name][0].0, after["asset_changes"][0].0,
                "the same batch"
            );
        }
        // The files the tables reference are there.
        for dir in ["asset_changes", "dead_letters"] {
            let n = walk(&root.join(dir));
            assert_eq!(n, 1, "{dir}: one Parquet file");
        }
    }

    fn walk(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| {
                        let p = e.path();
                        if p.is_dir() {
                            walk(&p)
                        } else {
                            usize::from(p.extension().is_some_and(|x| x == "parquet"))
                        }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }

    #[test]
    fn partition_tuples_come_from_the_hive_directories() {
        let spec = crate::schema::ciem();
        let t = partition_of(
            "ciem_events/provider=aws/account=012345678901/date=2024-03-01/part-x.parquet",
            spec,
        )
        .expect("tuple");
        let values: Vec<Option<Literal>> = t.into_iter().collect();
        assert_eq!(
            values,
            vec![
                Some(Literal::string("aws")),
                Some(Literal::string("012345678901")),
                Some(Literal::date_from_str("2024-03-01").expect("date")),
            ]
        );
        let t = partition_of(
            "ciem_events/provider=aws/account=unknown/date=2024-03-01/part-x.parquet",
            spec,
        )
        .expect("tuple");
        assert_eq!(t.into_iter().nth(1), Some(None));
        assert_eq!(percent_decode("a%2Fb%2E"), "a/b.");
    }
}
