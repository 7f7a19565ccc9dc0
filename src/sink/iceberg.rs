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
//! hosts) of the `iceberg-catalog-sql` crate, a REST catalog (`iceberg-catalog-rest`), or the
//! AWS Glue Data Catalog ([`super::glue_catalog`]). Storage: the local file system, or S3 with
//! `[sink.s3]` (data files uploaded by the lake's [`S3Remote`], table metadata written through
//! iceberg's OpenDAL storage, both signed with the AWS SDK's credential chain).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    SqlCatalogBuilder,
};
use serde::Deserialize;

use super::fenced_catalog::{FencedCatalog, LoadCheck};
use super::journal::{Segment, UnitState};
use super::lake::{BatchCommit, Claim, CommittedFile, Remote};
use super::s3::S3Remote;
use super::{SinkError, block_on};
use crate::schema::TableSpec;

/// Snapshot summary property: the batch id of an append.
pub const BATCH_PROPERTY: &str = "auditlake.batch";
/// Snapshot summary property: the input segments an append covers (JSON list).
pub const SEGMENTS_PROPERTY: &str = "auditlake.segments";
/// Table property prefix: `auditlake.input-checkpoint.<sequence number>` is the location of
/// the input checkpoint that covers the table's snapshots up to that sequence number (the
/// highest such property is current).
pub const CHECKPOINT_PROPERTY: &str = "auditlake.input-checkpoint.";
/// How long the batch ids of expired snapshots stay in a checkpoint (finishing a batch a crash
/// interrupted needs them): 30 days.
const CHECKPOINT_BATCHES_MS: i64 = super::lake::BATCH_IDS_KEPT_DAYS as i64 * 24 * 3600 * 1000;
const DEFAULT_MAX_SNAPSHOTS: usize = 200;
/// The table every batch with input commits to first: its appends order all input claims.
const COMMIT_POINT: &str = "ciem_events";
/// Property of the commit point table: the seed of the event keys every writer shares (hex),
/// set when the table is created.
pub const KEY_SEED_PROPERTY: &str = "auditlake.event-key-seed";
/// Snapshot summary property of a commit point append: the URLs of the batch's event key
/// files (JSON list), for the other writers' dedup.
pub const KEYS_PROPERTY: &str = "auditlake.keys";

/// What the expired snapshots of a table recorded: the input their appends covered (per unit,
/// merged) and their batch ids of the last 30 days. Written as JSON next to the table's
/// metadata; cumulative (each checkpoint includes the one before).
#[derive(Debug, Default, serde::Serialize, Deserialize)]
struct InputCheckpoint {
    /// The sequence number of the newest snapshot it covers.
    through_sequence: i64,
    segments: Vec<Segment>,
    /// (batch id, commit time in ms since the epoch).
    batches: Vec<(String, i64)>,
    /// The event key files the expired appends named, of the last 30 days' dates (URLs).
    #[serde(default)]
    keys: Vec<String>,
}

/// Which kind of Iceberg catalog holds the tables.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CatalogKind {
    /// The SQL catalog: SQLite (default, a file in the lake) or PostgreSQL.
    #[default]
    Sql,
    /// An Iceberg REST catalog (Polaris, Lakekeeper, Nessie, Gravitino).
    Rest,
    /// The AWS Glue Data Catalog (Athena reads its Iceberg tables).
    Glue,
}

/// `[sink.iceberg]`.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IcebergConfig {
    /// `sql` (default), `rest` or `glue`.
    #[serde(default)]
    pub catalog: CatalogKind,
    /// sql: the database, `sqlite://<file>` or `postgres://user@host/db` (the password from
    /// `PGPASSWORD`); default `sqlite://<lake>/_auditlake/iceberg/catalog.db`, created when
    /// missing. rest: the server's URL (required). glue: an endpoint override (optional).
    #[serde(default)]
    pub catalog_uri: Option<String>,
    /// Where the tables' metadata and manifests go: a directory, or `s3://bucket/prefix` with
    /// `[sink.s3]`. Default `<lake>/iceberg`, or `s3://<bucket>/<prefix>/iceberg` with
    /// `[sink.s3]`.
    #[serde(default)]
    pub warehouse: Option<String>,
    /// The namespace of the tables. Default `auditlake`.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Snapshots a table keeps: past this many, the older half is expired, the input they
    /// record carried into the table's input checkpoint first. Default 200.
    #[serde(default)]
    pub max_snapshots: Option<usize>,
    /// rest: the environment variable holding the OAuth2 client credential
    /// (`client_id:client_secret`).
    #[serde(default)]
    pub credential_env: Option<String>,
    /// rest: the environment variable holding a bearer token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// rest: the OAuth2 scope (default `catalog`).
    #[serde(default)]
    pub scope: Option<String>,
    /// glue: the catalog id (an AWS account id) when not the caller's own.
    #[serde(default)]
    pub catalog_id: Option<String>,
}

impl std::fmt::Debug for IcebergConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A catalog URI may hold a password: only its scheme and host are shown.
        f.debug_struct("IcebergConfig")
            .field("catalog", &self.catalog)
            .field("catalog_uri", &self.catalog_uri.as_deref().map(redact_uri))
            .field("warehouse", &self.warehouse)
            .field("namespace", &self.namespace)
            .field("max_snapshots", &self.max_snapshots)
            .field("credential_env", &self.credential_env)
            .field("token_env", &self.token_env)
            .field("scope", &self.scope)
            .field("catalog_id", &self.catalog_id)
            .finish()
    }
}

/// A URI with any `user:password@` replaced by `***@`.
pub fn redact_uri(uri: &str) -> String {
    match (uri.find("://"), uri.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &uri[..scheme + 3], &uri[at..])
        }
        _ => uri.to_string(),
    }
}

/// A secret named by an `*_env` setting, read from the environment.
fn secret_from_env(setting: &str, var: &str) -> Result<String, SinkError> {
    std::env::var(var).map_err(|_| {
        SinkError::Config(format!(
            "[sink.iceberg] {setting} = {var:?}: the environment variable {var} is not set"
        ))
    })
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

    /// The warehouse location as a URL (`file://…` or `s3://…`); local directories are
    /// created.
    fn warehouse(&self, lake: &Path, files: Option<&S3Remote>) -> Result<String, SinkError> {
        let s3_default = files.map(|s3| s3.url("iceberg"));
        match warehouse_location(self.warehouse.as_deref(), lake, s3_default) {
            Warehouse::Url(url) => Ok(url),
            Warehouse::Dir(dir) => {
                std::fs::create_dir_all(&dir)
                    .map_err(|e| SinkError::io("create directory", &dir, e))?;
                let dir =
                    std::fs::canonicalize(&dir).map_err(|e| SinkError::io("resolve", &dir, e))?;
                Ok(format!("file://{}", dir.display()))
            }
        }
    }

    pub fn namespace(&self) -> String {
        self.namespace
            .clone()
            .unwrap_or_else(|| "auditlake".to_string())
    }
}

/// Where the tables' files live, as the writers and `schema --ddl iceberg` both see it.
enum Warehouse {
    /// `s3://…` or `file://…`, without a trailing slash.
    Url(String),
    /// A local directory, relative to the working directory when relative.
    Dir(PathBuf),
}

/// The warehouse of `[sink.iceberg] warehouse` (`configured`): a URL as given, a directory as
/// given, or when unset `<prefix>/iceberg` in the lake's bucket (`s3_default`, the URL of
/// `iceberg` under the lake's S3 root) or else `<lake>/iceberg`.
fn warehouse_location(
    configured: Option<&str>,
    lake: &Path,
    s3_default: Option<String>,
) -> Warehouse {
    match (configured, s3_default) {
        (Some(w), _) if w.contains("://") => Warehouse::Url(w.trim_end_matches('/').to_string()),
        (Some(w), _) => Warehouse::Dir(PathBuf::from(w)),
        (None, Some(url)) => Warehouse::Url(url),
        (None, None) => Warehouse::Dir(lake.join("iceberg")),
    }
}

/// This state directory's writer id, made once (`_auditlake/iceberg/writer-id`): the instance
/// name of a lake written as Iceberg tables when `[sink] instance` is not set.
pub fn writer_id(lake: &Path) -> Result<String, SinkError> {
    let dir = lake.join("_auditlake/iceberg");
    let file = dir.join("writer-id");
    if let Ok(id) = std::fs::read_to_string(&file) {
        let id = id.trim();
        if !id.is_empty() {
            return Ok(id.to_string());
        }
    }
    std::fs::create_dir_all(&dir).map_err(|e| SinkError::io("create directory", &dir, e))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let seed = format!(
        "{}\0{}\0{}\0{nanos}",
        std::fs::read_to_string("/etc/hostname").unwrap_or_default(),
        lake.display(),
        std::process::id()
    );
    let id = format!(
        "w{:012x}",
        xxhash_rust::xxh3::xxh3_64(seed.as_bytes()) >> 16
    );
    let tmp = dir.join("writer-id.tmp");
    std::fs::write(&tmp, &id).map_err(|e| SinkError::io("write", &tmp, e))?;
    std::fs::rename(&tmp, &file).map_err(|e| SinkError::io("rename", &file, e))?;
    Ok(id)
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

/// Signs the tables' S3 requests with the credentials of the AWS SDK's chain (environment,
/// profile, web identity, container and instance roles), refreshed as the SDK refreshes them.
#[derive(Debug)]
struct SdkCredentials(aws_credential_types::provider::SharedCredentialsProvider);

impl reqsign_core::ProvideCredential for SdkCredentials {
    type Credential = reqsign_aws_v4::Credential;

    async fn provide_credential(
        &self,
        _ctx: &reqsign_core::Context,
    ) -> reqsign_core::Result<Option<Self::Credential>> {
        use aws_credential_types::provider::ProvideCredentials;
        let c = self.0.provide_credentials().await.map_err(|e| {
            reqsign_core::Error::credential_invalid(format!(
                "AWS credentials for the Iceberg tables: {}",
                crate::aws::error_chain(&e)
            ))
        })?;
        let expires_in = c
            .expiry()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_secs()).ok())
            .and_then(|s| reqsign_core::time::Timestamp::from_second(s).ok());
        Ok(Some(reqsign_aws_v4::Credential {
            access_key_id: c.access_key_id().to_string(),
            secret_access_key: c.secret_access_key().to_string(),
            session_token: c.session_token().map(str::to_string),
            expires_in,
        }))
    }
}

/// Iceberg's storage factory for the tables' files, and the FileIO properties it needs.
type TableStorage = (Arc<dyn iceberg::io::StorageFactory>, Vec<(String, String)>);

/// The storage of the tables' files: iceberg's factory and the FileIO properties it needs.
fn storage(files: Option<&S3Remote>) -> Result<TableStorage, SinkError> {
    let Some(s3) = files else {
        return Ok((Arc::new(LocalFsStorageFactory), Vec::new()));
    };
    let sdk = s3.sdk_config().ok_or_else(|| {
        SinkError::Config("the Iceberg tables' S3 storage needs [sink.s3]".to_string())
    })?;
    let mut props = vec![(
        iceberg::io::S3_PATH_STYLE_ACCESS.to_string(),
        s3.path_style().to_string(),
    )];
    if let Some(region) = sdk.region() {
        props.push((iceberg::io::S3_REGION.to_string(), region.to_string()));
    }
    if let Some(endpoint) = sdk.endpoint_url() {
        props.push((iceberg::io::S3_ENDPOINT.to_string(), endpoint.to_string()));
    }
    let loader = sdk
        .credentials_provider()
        .map(|p| iceberg_storage_opendal::CustomAwsCredentialLoader::new(SdkCredentials(p)));
    Ok((
        Arc::new(iceberg_storage_opendal::OpenDalStorageFactory::S3 {
            customized_credential_load: loader,
        }),
        props,
    ))
}

/// Connects to the catalog `[sink.iceberg]` names.
fn open_catalog(
    rt: &tokio::runtime::Runtime,
    lake: &Path,
    cfg: &IcebergConfig,
    files: Option<&S3Remote>,
    factory: Arc<dyn iceberg::io::StorageFactory>,
    storage_props: Vec<(String, String)>,
) -> Result<Box<dyn Catalog>, SinkError> {
    let mut props: HashMap<String, String> = storage_props.into_iter().collect();
    let open = |e| iceberg_error("open the Iceberg catalog", e);
    match cfg.catalog {
        CatalogKind::Sql => {
            let uri = cfg.uri(lake);
            if uri.starts_with("sqlite:") {
                let dir = lake.join("_auditlake/iceberg");
                std::fs::create_dir_all(&dir)
                    .map_err(|e| SinkError::io("create directory", &dir, e))?;
            }
            let bind = if uri.starts_with("postgres") {
                SqlBindStyle::DollarNumeric
            } else {
                SqlBindStyle::QMark
            };
            sqlx::any::install_default_drivers();
            props.insert(SQL_CATALOG_PROP_URI.to_string(), uri);
            props.insert(
                SQL_CATALOG_PROP_WAREHOUSE.to_string(),
                cfg.warehouse(lake, files)?,
            );
            props.insert(SQL_CATALOG_PROP_BIND_STYLE.to_string(), bind.to_string());
            // Opening creates the catalog's own tables when missing; writers starting at once
            // on a new PostgreSQL database race there (a duplicate key in pg_type): try again.
            let mut attempt = 0;
            loop {
                attempt += 1;
                let loaded = block_on(rt, async {
                    SqlCatalogBuilder::default()
                        .with_storage_factory(factory.clone())
                        .load("auditlake", props.clone())
                        .await
                });
                match loaded {
                    Ok(c) => return Ok(Box::new(c)),
                    Err(e) if attempt < 4 => {
                        tracing::debug!(error = %e, attempt, "opening the Iceberg catalog failed; trying again");
                        std::thread::sleep(std::time::Duration::from_millis(150 * attempt));
                    }
                    Err(e) => return Err(open(e)),
                }
            }
        }
        CatalogKind::Rest => {
            let uri = cfg.catalog_uri.clone().ok_or_else(|| {
                SinkError::Config(
                    "[sink.iceberg] catalog = \"rest\" needs catalog_uri, the REST catalog's URL"
                        .to_string(),
                )
            })?;
            props.insert(iceberg_catalog_rest::REST_CATALOG_PROP_URI.to_string(), uri);
            // A REST catalog names its warehouse; given only when set.
            if let Some(w) = &cfg.warehouse {
                props.insert(
                    iceberg_catalog_rest::REST_CATALOG_PROP_WAREHOUSE.to_string(),
                    w.clone(),
                );
            }
            if let Some(var) = &cfg.credential_env {
                props.insert(
                    "credential".to_string(),
                    secret_from_env("credential_env", var)?,
                );
            }
            if let Some(var) = &cfg.token_env {
                props.insert("token".to_string(), secret_from_env("token_env", var)?);
            }
            if let Some(scope) = &cfg.scope {
                props.insert("scope".to_string(), scope.clone());
            }
            let c = block_on(rt, async {
                iceberg_catalog_rest::RestCatalogBuilder::default()
                    .with_storage_factory(factory)
                    .load("auditlake", props)
                    .await
            })
            .map_err(open)?;
            Ok(Box::new(c))
        }
        CatalogKind::Glue => {
            let sdk = files.and_then(S3Remote::sdk_config).ok_or_else(|| {
                SinkError::Config(
                    "[sink.iceberg] catalog = \"glue\" needs [sink.s3] (the bucket of the tables)"
                        .to_string(),
                )
            })?;
            let file_io = iceberg::io::FileIOBuilder::new(factory)
                .with_props(props)
                .build();
            Ok(Box::new(super::glue_catalog::GlueCatalog::new(
                sdk,
                cfg.catalog_uri.as_deref(),
                cfg.catalog_id.clone(),
                cfg.warehouse(lake, files)?,
                file_io,
                iceberg::Runtime::new(rt),
            )))
        }
    }
}

/// The lake's Iceberg tables in one catalog.
pub struct IcebergTables {
    rt: tokio::runtime::Runtime,
    catalog: Box<dyn Catalog>,
    namespace: NamespaceIdent,
    /// Where data file paths start: `file:///<lake>` or `s3://<bucket>/<prefix>`.
    data_root: String,
    /// The uploader of data files when they go to S3.
    files: Option<S3Remote>,
    tables: BTreeMap<String, Table>,
    /// The input every writer's appends cover, from the snapshot summaries read so far.
    held: HashMap<String, UnitState>,
    /// The snapshots whose summaries are in `held`.
    read_snapshots: HashSet<i64>,
    /// The checkpoint files read into `held` and `expired_batches`.
    read_checkpoints: HashSet<String>,
    /// Per table, the batch ids its checkpoint records (their snapshots are expired).
    expired_batches: HashMap<String, HashSet<String>>,
    max_snapshots: usize,
    /// The event key seed every writer shares ([`KEY_SEED_PROPERTY`]); None for tables made
    /// before it existed (then keys stay per state directory).
    key_seed: Option<u64>,
    /// Event key files the appends read so far name (URLs) that are still to be copied into
    /// the state directory (dropped once copied, or found to be of no use here).
    key_files: BTreeSet<String>,
}

impl std::fmt::Debug for IcebergTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The catalog URI may hold a password: never printed.
        f.debug_struct("IcebergTables")
            .field("namespace", &self.namespace)
            .field("data_root", &self.data_root)
            .finish_non_exhaustive()
    }
}

impl IcebergTables {
    /// Connects to the catalog and creates the namespace and the tables that are missing.
    /// `files`: where data files are uploaded (S3), or None for the lake directory itself.
    pub fn open(
        lake: &Path,
        cfg: &IcebergConfig,
        files: Option<S3Remote>,
    ) -> Result<Self, SinkError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| SinkError::io("start a runtime for", Path::new("Iceberg"), e))?;
        // The lake may not exist yet (its first start): the tables' files go under it.
        std::fs::create_dir_all(lake).map_err(|e| SinkError::io("create directory", lake, e))?;
        let data_root = match &files {
            Some(s3) => s3.url("").trim_end_matches('/').to_string(),
            None => {
                let root =
                    std::fs::canonicalize(lake).map_err(|e| SinkError::io("resolve", lake, e))?;
                format!("file://{}", root.display())
            }
        };
        let (factory, storage_props) = storage(files.as_ref())?;
        let namespace = NamespaceIdent::new(cfg.namespace());
        let catalog = open_catalog(&rt, lake, cfg, files.as_ref(), factory, storage_props)?;
        let mut me = IcebergTables {
            rt,
            catalog,
            namespace,
            data_root,
            files,
            tables: BTreeMap::new(),
            held: HashMap::new(),
            read_snapshots: HashSet::new(),
            read_checkpoints: HashSet::new(),
            expired_batches: HashMap::new(),
            max_snapshots: cfg.max_snapshots.unwrap_or(DEFAULT_MAX_SNAPSHOTS).max(2),
            key_seed: None,
            key_files: BTreeSet::new(),
        };
        me.ensure_tables()?;
        me.key_seed = me.tables.get(COMMIT_POINT).and_then(|t| {
            let text = t.metadata().properties().get(KEY_SEED_PROPERTY)?;
            u64::from_str_radix(text, 16).ok()
        });
        if me.key_seed.is_none() {
            tracing::warn!(
                "the table {COMMIT_POINT} has no {KEY_SEED_PROPERTY} (made by an older auditlake): event ids are deduplicated per state directory, not across hosts"
            );
        }
        Ok(me)
    }

    fn ensure_tables(&mut self) -> Result<(), SinkError> {
        let ns = self.namespace.clone();
        let catalog: &dyn Catalog = self.catalog.as_ref();
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
    ///
    /// A batch with input commits to [`COMMIT_POINT`] first, even with no file for it: that
    /// append is conditional on `claims` (the positions the batch read itself). It is refused
    /// with [`SinkError::InputTaken`] when the table shows another writer's commit of any of
    /// them since ([`InputFence`]); the catalog's swap makes the check and the append one step.
    pub fn append(&mut self, commit: &BatchCommit<'_>) -> Result<(), SinkError> {
        let BatchCommit {
            batch,
            files,
            segments,
            claims,
            key_files,
        } = *commit;
        let key_urls = serde_json::to_string(
            &key_files
                .iter()
                .map(|rel| format!("{}/{rel}", self.data_root))
                .collect::<Vec<_>>(),
        )
        .map_err(|e| SinkError::Schema(format!("key files: {e}")))?;
        let mut by_table: BTreeMap<&str, Vec<&CommittedFile>> = BTreeMap::new();
        for f in files {
            let dataset = f.path.split('/').next().unwrap_or_default();
            by_table.entry(dataset).or_default().push(f);
        }
        let mut order: Vec<(&str, Vec<&CommittedFile>)> = Vec::with_capacity(by_table.len() + 1);
        if !segments.is_empty() {
            // Input that held nothing to write (the end of a file, positions all skipped) is
            // committed too, so every host learns that the input is in the lake.
            order.push((
                COMMIT_POINT,
                by_table.remove(COMMIT_POINT).unwrap_or_default(),
            ));
        }
        order.extend(by_table);
        let segments = serde_json::to_string(segments)
            .map_err(|e| SinkError::Schema(format!("segments: {e}")))?;
        for (i, (dataset, files)) in order.into_iter().enumerate() {
            let (spec, _) = crate::schema::table(dataset).ok_or_else(|| {
                SinkError::Schema(format!("{dataset}: not a dataset of the lake"))
            })?;
            let table = self
                .tables
                .get(dataset)
                .ok_or_else(|| SinkError::Schema(format!("no Iceberg table for {dataset}")))?;
            // Finishing a batch a crash interrupted: the tables it already reached are skipped
            // (an append is not atomic across tables).
            if self.holds(dataset, table, batch) {
                continue;
            }
            let spec_id = table.metadata().default_partition_spec_id();
            let data_files = files
                .iter()
                .map(|f| {
                    DataFileBuilder::default()
                        .content(DataContentType::Data)
                        .file_path(format!("{}/{}", self.data_root, f.path))
                        .file_format(DataFileFormat::Parquet)
                        .partition(partition_of(&f.path, spec)?)
                        .partition_spec_id(spec_id)
                        .record_count(f.rows as u64)
                        .file_size_in_bytes(f.bytes)
                        .build()
                        .map_err(|e| SinkError::Iceberg(format!("data file {}: {e}", f.path)))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut props = HashMap::from([
                (BATCH_PROPERTY.to_string(), batch.to_string()),
                (SEGMENTS_PROPERTY.to_string(), segments.clone()),
            ]);
            if i == 0 && !key_files.is_empty() {
                props.insert(KEYS_PROPERTY.to_string(), key_urls.clone());
            }
            // Only the first append of a batch is conditional: once the commit point holds
            // the batch, the rest of it is committed whatever others do.
            let fence = (i == 0 && dataset == COMMIT_POINT && !claims.is_empty())
                .then(|| InputFence::new(batch, claims, self));
            let catalog: &dyn Catalog = self.catalog.as_ref();
            let ident = table.identifier().clone();
            let result = block_on(&self.rt, async {
                let tx = Transaction::new(table);
                let tx = tx
                    .fast_append()
                    .add_data_files(data_files)
                    .set_snapshot_properties(props)
                    .apply(tx)?;
                match &fence {
                    Some(fence) => {
                        let fenced = FencedCatalog {
                            inner: catalog,
                            table: &ident,
                            check: fence,
                        };
                        tx.commit(&fenced).await
                    }
                    None => tx.commit(catalog).await,
                }
            });
            let committed = match (result, fence.and_then(InputFence::verdict)) {
                (Ok(t), _) => t,
                // An earlier try of this commit went through (its reply was lost).
                (Err(_), Some(Verdict::Committed)) => {
                    block_on(&self.rt, catalog.load_table(&ident)).map_err(|e| {
                        iceberg_error(&format!("read the Iceberg table {dataset}"), e)
                    })?
                }
                (Err(_), Some(Verdict::Taken(c))) => {
                    return Err(SinkError::InputTaken {
                        unit: c.unit,
                        from: c.from,
                        to: c.to,
                    });
                }
                (Err(e), None) => {
                    return Err(iceberg_error(
                        &format!("commit to the Iceberg table {dataset}"),
                        e,
                    ));
                }
            };
            let snapshots = committed.metadata().snapshots().count();
            self.tables.insert(dataset.to_string(), committed);
            if snapshots > self.max_snapshots {
                // The batch is committed: a failed expiry is retried after a later append.
                if let Err(e) = self.expire(dataset) {
                    tracing::warn!(table = dataset, error = %e, "could not expire old snapshots (retried after a later commit)");
                }
            }
        }
        Ok(())
    }

    /// Whether a table holds a batch: in a snapshot, or in its checkpoint.
    fn holds(&self, dataset: &str, table: &Table, batch: &str) -> bool {
        batches_of(table).any(|b| b == batch)
            || self
                .expired_batches
                .get(dataset)
                .is_some_and(|b| b.contains(batch))
    }

    /// The table's current input checkpoint: (its property, location), the newest.
    fn checkpoint_of(table: &Table) -> Option<(i64, String)> {
        table
            .metadata()
            .properties()
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(CHECKPOINT_PROPERTY)
                    .and_then(|n| n.parse::<i64>().ok())
                    .map(|n| (n, v.clone()))
            })
            .max()
    }

    fn read_checkpoint(&self, table: &Table, location: &str) -> Result<InputCheckpoint, SinkError> {
        let bytes = block_on(&self.rt, async {
            table.file_io().new_input(location)?.read().await
        })
        .map_err(|e| iceberg_error(&format!("read the input checkpoint {location}"), e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| SinkError::Iceberg(format!("input checkpoint {location}: {e}")))
    }

    /// Expires the older half of a table's snapshots, after writing what they record (and
    /// what the previous checkpoint held) into a new input checkpoint the table references.
    /// Safe with other writers committing or expiring at once: an append retried on top of it
    /// keeps its own snapshot; a concurrent expiry adds its own checkpoint property (the
    /// highest is current, and each covers all snapshots up to its sequence number); expiring
    /// a snapshot already gone is a no-op.
    pub fn expire(&mut self, dataset: &str) -> Result<usize, SinkError> {
        let table = self
            .tables
            .get(dataset)
            .ok_or_else(|| SinkError::Schema(format!("no Iceberg table for {dataset}")))?
            .clone();
        let metadata = table.metadata();
        let mut snapshots: Vec<_> = metadata.snapshots().collect();
        snapshots.sort_by_key(|s| s.sequence_number());
        let keep = (self.max_snapshots / 2).max(1);
        if snapshots.len() <= keep {
            return Ok(0);
        }
        let old = &snapshots[..snapshots.len() - keep];
        let current = metadata.current_snapshot_id();
        let old: Vec<_> = old
            .iter()
            .filter(|s| Some(s.snapshot_id()) != current)
            .collect();
        let Some(through) = old.iter().map(|s| s.sequence_number()).max() else {
            return Ok(0);
        };
        let mut checkpoint = match Self::checkpoint_of(&table) {
            Some((_, location)) => self.read_checkpoint(&table, &location)?,
            None => InputCheckpoint::default(),
        };
        if checkpoint.through_sequence >= through {
            return Ok(0);
        }
        let mut units: BTreeMap<String, UnitState> = BTreeMap::new();
        for seg in &checkpoint.segments {
            units.entry(seg.unit.clone()).or_default().add_segment(seg);
        }
        let mut batches: BTreeMap<String, i64> = checkpoint.batches.drain(..).collect();
        let mut key_files: BTreeSet<String> = checkpoint.keys.drain(..).collect();
        for s in &old {
            if s.sequence_number() <= checkpoint.through_sequence {
                continue;
            }
            let props = &s.summary().additional_properties;
            if let Some(text) = props.get(SEGMENTS_PROPERTY) {
                let segments: Vec<Segment> = serde_json::from_str(text).map_err(|e| {
                    SinkError::Iceberg(format!(
                        "{dataset}: snapshot {} has unreadable {SEGMENTS_PROPERTY}: {e}",
                        s.snapshot_id()
                    ))
                })?;
                for seg in &segments {
                    units.entry(seg.unit.clone()).or_default().add_segment(seg);
                }
            }
            if let Some(b) = props.get(BATCH_PROPERTY) {
                batches.insert(b.clone(), s.timestamp_ms());
            }
            if let Some(text) = props.get(KEYS_PROPERTY) {
                key_files.extend(serde_json::from_str::<Vec<String>>(text).unwrap_or_default());
            }
        }
        let newest = old.iter().map(|s| s.timestamp_ms()).max().unwrap_or(0);
        let checkpoint = InputCheckpoint {
            through_sequence: through,
            segments: units.iter().flat_map(|(u, st)| st.segments(u)).collect(),
            batches: batches
                .into_iter()
                .filter(|&(_, t)| t >= newest - CHECKPOINT_BATCHES_MS)
                .collect(),
            keys: key_files
                .into_iter()
                .filter(|url| {
                    super::keys::day_of_key_file(url)
                        .is_none_or(|day| day * 86_400_000 >= newest - CHECKPOINT_BATCHES_MS)
                })
                .collect(),
        };
        let bytes = serde_json::to_vec(&checkpoint)
            .map_err(|e| SinkError::Iceberg(format!("input checkpoint: {e}")))?;
        let nonce = xxhash_rust::xxh3::xxh3_64(
            format!("{:?}{}", std::time::SystemTime::now(), std::process::id()).as_bytes(),
        );
        let location = format!(
            "{}/metadata/auditlake-input-{through:012}-{nonce:016x}.json",
            metadata.location().trim_end_matches('/')
        );
        let older: Vec<String> = metadata
            .properties()
            .keys()
            .filter(|k| {
                k.strip_prefix(CHECKPOINT_PROPERTY)
                    .and_then(|n| n.parse::<i64>().ok())
                    .is_some_and(|n| n < through)
            })
            .cloned()
            .collect();
        let ids: Vec<i64> = old.iter().map(|s| s.snapshot_id()).collect();
        let expired = ids.len();
        let catalog: &dyn Catalog = self.catalog.as_ref();
        let committed = block_on(&self.rt, async {
            table
                .file_io()
                .new_output(&location)?
                .write(bytes.into())
                .await?;
            let tx = Transaction::new(&table);
            let mut props = tx
                .update_table_properties()
                .set(format!("{CHECKPOINT_PROPERTY}{through}"), location.clone());
            for k in older {
                props = props.remove(k);
            }
            let tx = props.apply(tx)?;
            // By id only: age-based expiry pinned to the epoch.
            let tx = tx
                .expire_snapshots()
                .expire_snapshot_ids(ids)
                .expire_older_than_ms(0)
                .apply(tx)?;
            tx.commit(catalog).await
        })
        .map_err(|e| {
            iceberg_error(
                &format!("expire snapshots of the Iceberg table {dataset}"),
                e,
            )
        })?;
        tracing::info!(table = dataset, expired, through_sequence = through, checkpoint = %location, "expired old snapshots; their input record is in the checkpoint");
        self.tables.insert(dataset.to_string(), committed);
        Ok(expired)
    }

    /// The batch ids the tables' snapshots record (as the catalog holds them now).
    pub fn committed(&mut self) -> Result<BTreeSet<String>, SinkError> {
        let names: Vec<String> = self.tables.keys().cloned().collect();
        self.read_tables(names)
    }

    /// Loads the tables `names` as the catalog holds them now, adds what their new snapshots
    /// (and checkpoints) record to what this writer knows, and returns the batch ids they name.
    fn read_tables(&mut self, names: Vec<String>) -> Result<BTreeSet<String>, SinkError> {
        let ns = self.namespace.clone();
        let catalog: &dyn Catalog = self.catalog.as_ref();
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
        for (name, t) in &loaded {
            if let Some((_, location)) = Self::checkpoint_of(t)
                && !self.read_checkpoints.contains(&location)
            {
                let checkpoint = self.read_checkpoint(t, &location)?;
                for seg in &checkpoint.segments {
                    self.held
                        .entry(seg.unit.clone())
                        .or_default()
                        .add_segment(seg);
                }
                self.expired_batches
                    .entry(name.clone())
                    .or_default()
                    .extend(checkpoint.batches.into_iter().map(|(b, _)| b));
                self.key_files.extend(checkpoint.keys);
                self.read_checkpoints.insert(location);
            }
            if let Some(expired) = self.expired_batches.get(name) {
                batches.extend(expired.iter().cloned());
            }
            batches.extend(batches_of(t).map(str::to_string));
            for s in t.metadata().snapshots() {
                if !self.read_snapshots.insert(s.snapshot_id()) {
                    continue;
                }
                if let Some(text) = s.summary().additional_properties.get(KEYS_PROPERTY) {
                    self.key_files
                        .extend(serde_json::from_str::<Vec<String>>(text).unwrap_or_default());
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
        self.tables.extend(loaded);
        Ok(batches)
    }

    /// What the tables hold of an input unit, as every writer committed it (read now). Every
    /// batch with input commits to [`COMMIT_POINT`] first, so that table alone is read.
    pub fn unit(&mut self, unit: &str) -> Result<Option<UnitState>, SinkError> {
        self.read_tables(vec![COMMIT_POINT.to_string()])?;
        Ok(self.held.get(unit).cloned())
    }

    /// Copies the event key files the appends read so far name into the state directory
    /// `root` (`_auditlake/keys/date=…/`, where the key index finds them), except this
    /// writer's own (`own`) and those of dates before `oldest_day`. A file not there yet (its
    /// writer renames local key files into place after the commit) is tried again later.
    pub fn fetch_keys(
        &mut self,
        root: &Path,
        oldest_day: i64,
        own: &dyn Fn(&str) -> bool,
    ) -> Result<usize, SinkError> {
        let Some(table) = self.tables.get(COMMIT_POINT) else {
            return Ok(0);
        };
        let file_io = table.file_io().clone();
        let mut fetched = 0;
        let mut done = Vec::new();
        for url in &self.key_files {
            let name = url.rsplit('/').next().unwrap_or_default();
            let rel = url
                .find("/_auditlake/keys/")
                .map(|i| url[i + 1..].to_string())
                .filter(|rel| !rel.split('/').any(|c| c == ".." || c.is_empty()));
            let (Some(rel), Some(day)) = (rel, super::keys::day_of_key_file(url)) else {
                tracing::warn!(url, "not an event key file URL; ignored");
                done.push(url.clone());
                continue;
            };
            let dest = root.join(&rel);
            if own(name) || day < oldest_day || dest.exists() {
                done.push(url.clone());
                continue;
            }
            let bytes = match block_on(&self.rt, async { file_io.new_input(url)?.read().await }) {
                Ok(b) => b,
                Err(e) => {
                    tracing::debug!(url, error = %e, "event key file not readable yet; tried again later");
                    continue;
                }
            };
            if let Some(dir) = dest.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| SinkError::io("create directory", dir, e))?;
            }
            let tmp = super::journal::tmp_path(&dest);
            std::fs::write(&tmp, &bytes).map_err(|e| SinkError::io("write", &tmp, e))?;
            std::fs::rename(&tmp, &dest).map_err(|e| SinkError::io("rename", &dest, e))?;
            done.push(url.clone());
            fetched += 1;
        }
        for url in done {
            self.key_files.remove(&url);
        }
        if fetched > 0 {
            tracing::debug!(files = fetched, "event key files of other writers fetched");
        }
        Ok(fetched)
    }
}

/// The check of a batch's conditional append ([`IcebergTables::append`]), run on the commit
/// point table each time the commit loads it: the table must not hold the batch already, nor
/// another writer's commit of any position the batch claims.
struct InputFence<'a> {
    batch: &'a str,
    claims: &'a [Claim],
    /// What this writer had read of the claimed units (every commit it saw).
    held: HashMap<String, UnitState>,
    read_snapshots: &'a HashSet<i64>,
    read_checkpoints: &'a HashSet<String>,
    verdict: std::sync::Mutex<Option<Verdict>>,
}

enum Verdict {
    /// The table holds the batch: an earlier try went through.
    Committed,
    /// The table holds these claimed positions from another commit.
    Taken(Claim),
}

impl<'a> InputFence<'a> {
    fn new(batch: &'a str, claims: &'a [Claim], tables: &'a IcebergTables) -> Self {
        let held = claims
            .iter()
            .filter_map(|c| Some((c.unit.clone(), tables.held.get(&c.unit)?.clone())))
            .collect();
        InputFence {
            batch,
            claims,
            held,
            read_snapshots: &tables.read_snapshots,
            read_checkpoints: &tables.read_checkpoints,
            verdict: std::sync::Mutex::new(None),
        }
    }

    fn verdict(self) -> Option<Verdict> {
        self.verdict
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn refuse(&self, verdict: Verdict, why: &str) -> iceberg::Error {
        *self
            .verdict
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(verdict);
        iceberg::Error::new(iceberg::ErrorKind::DataInvalid, why.to_string())
    }
}

#[async_trait::async_trait]
impl LoadCheck for InputFence<'_> {
    async fn check(&self, table: &Table) -> iceberg::Result<()> {
        if batches_of(table).any(|b| b == self.batch) {
            return Err(self.refuse(Verdict::Committed, "the table holds the batch"));
        }
        let mut held = self.held.clone();
        let mut add = |segments: &[Segment]| {
            for seg in segments {
                if self.claims.iter().any(|c| c.unit == seg.unit) {
                    held.entry(seg.unit.clone()).or_default().add_segment(seg);
                }
            }
        };
        for s in table.metadata().snapshots() {
            if self.read_snapshots.contains(&s.snapshot_id()) {
                continue;
            }
            if let Some(text) = s.summary().additional_properties.get(SEGMENTS_PROPERTY) {
                // An unreadable summary is reported where the tables are read.
                if let Ok(segments) = serde_json::from_str::<Vec<Segment>>(text) {
                    add(&segments);
                }
            }
        }
        // Snapshots expired since this writer last read the table are in its new checkpoint.
        if let Some((_, location)) = IcebergTables::checkpoint_of(table)
            && !self.read_checkpoints.contains(&location)
        {
            let bytes = table.file_io().new_input(&location)?.read().await?;
            let checkpoint: InputCheckpoint = serde_json::from_slice(&bytes).map_err(|e| {
                iceberg::Error::new(
                    iceberg::ErrorKind::DataInvalid,
                    format!("input checkpoint {location}: {e}"),
                )
            })?;
            if checkpoint.batches.iter().any(|(b, _)| b == self.batch) {
                return Err(self.refuse(Verdict::Committed, "the table holds the batch"));
            }
            add(&checkpoint.segments);
        }
        for c in self.claims {
            if let Some((from, to)) = held.get(&c.unit).and_then(|h| h.overlap(c.from, c.to)) {
                let taken = Claim {
                    unit: c.unit.clone(),
                    from,
                    to,
                };
                return Err(self.refuse(
                    Verdict::Taken(taken),
                    "another writer committed input this batch read",
                ));
            }
        }
        Ok(())
    }
}

/// The tables as the lake's commit point: files stay where the lake writes them (they are
/// the table's data files), and a batch is committed by its appends.
impl Remote for IcebergTables {
    fn put(&mut self, rel: &str, local: &Path) -> Result<(), SinkError> {
        match &mut self.files {
            Some(s3) => s3.put(rel, local),
            None => Ok(()),
        }
    }

    fn delete(&mut self, rel: &str) -> Result<(), SinkError> {
        // Files of a batch that never committed are in no table: removed from S3 here, and
        // from the lake directory by the lake.
        match &mut self.files {
            Some(s3) => s3.delete(rel),
            None => Ok(()),
        }
    }

    fn commit(&mut self, commit: &BatchCommit<'_>) -> Result<(), SinkError> {
        self.append(commit)
    }

    fn key_seed(&self) -> Option<u64> {
        self.key_seed
    }

    fn fetch_keys(
        &mut self,
        root: &Path,
        oldest_day: i64,
        own: &dyn Fn(&str) -> bool,
    ) -> Result<usize, SinkError> {
        IcebergTables::fetch_keys(self, root, oldest_day, own)
    }

    fn committed(&mut self) -> Result<BTreeSet<String>, SinkError> {
        IcebergTables::committed(self)
    }

    fn unit(&mut self, unit: &str) -> Result<Option<UnitState>, SinkError> {
        IcebergTables::unit(self, unit)
    }

    fn local_is_staging(&self) -> bool {
        self.files.is_some()
    }
}

/// What each engine needs to read the lake's Iceberg tables, for `auditlake schema --ddl
/// iceberg`: the catalog settings of pyiceberg, Spark, Trino, Athena and DuckDB for the
/// pipeline's `[sink]` (passwords in URIs shown as `***`).
pub fn reader_setup(lake: &super::LakeConfig) -> String {
    let cfg = lake.iceberg.clone().unwrap_or_default();
    let root = std::path::absolute(&lake.path).unwrap_or_else(|_| lake.path.clone());
    let ns = cfg.namespace();
    let s3_default = lake.s3.as_ref().map(|s3| s3.url("iceberg"));
    let warehouse = match warehouse_location(cfg.warehouse.as_deref(), &lake.path, s3_default) {
        Warehouse::Url(url) => url,
        Warehouse::Dir(dir) => format!(
            "file://{}",
            std::path::absolute(&dir).unwrap_or(dir).display()
        ),
    };
    let tables: Vec<String> = crate::schema::tables()
        .iter()
        .map(|t| format!("{ns}.{}", t.name))
        .collect();
    let kind = match cfg.catalog {
        CatalogKind::Sql => "sql",
        CatalogKind::Rest => "rest",
        CatalogKind::Glue => "glue",
    };
    let mut out = format!(
        "-- The lake's Iceberg tables (docs/iceberg.md): catalog {kind:?}, namespace {ns:?}\n-- Tables: {}\n-- Warehouse: {warehouse}\n",
        tables.join(", ")
    );
    let s3_props = lake.s3.as_ref().map(|s3| {
        let mut p = Vec::new();
        if let Some(r) = &s3.region {
            p.push(("s3.region", r.clone()));
        }
        if let Some(e) = &s3.endpoint_url {
            p.push(("s3.endpoint", e.clone()));
        }
        p
    });
    let py_s3: String = s3_props
        .iter()
        .flatten()
        .map(|(k, v)| format!(", **{{\"{k}\": \"{v}\"}}"))
        .collect();
    let first = format!("{ns}.ciem_events");
    match cfg.catalog {
        CatalogKind::Sql => {
            let uri = redact_uri(&cfg.uri(&root));
            let (py_uri, jdbc, driver) = if let Some(rest) = uri.strip_prefix("sqlite://") {
                let file = rest.split('?').next().unwrap_or(rest);
                (
                    // SQLAlchemy: `sqlite:///` and the path, so four slashes for an absolute one.
                    format!("sqlite:///{file}"),
                    format!("jdbc:sqlite:{file}"),
                    "org.sqlite.JDBC",
                )
            } else {
                let rest = uri.split_once("://").map_or(uri.as_str(), |(_, r)| r);
                let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
                (
                    uri.replacen("postgres://", "postgresql+psycopg2://", 1),
                    format!("jdbc:postgresql://{host}"),
                    "org.postgresql.Driver",
                )
            };
            out.push_str(&format!(
                "\n-- pyiceberg (pip install \"pyiceberg[sql-sqlite,sql-postgres,pyarrow]\"); the catalog's name is \"auditlake\":\n\
                 --   from pyiceberg.catalog.sql import SqlCatalog\n\
                 --   cat = SqlCatalog(\"auditlake\", uri=\"{py_uri}\", warehouse=\"{warehouse}\"{py_s3})\n\
                 --   cat.load_table(\"{first}\").scan().to_arrow()\n\
                 \n-- Spark (iceberg-spark-runtime, the JDBC catalog reads the same catalog tables):\n\
                 --   spark.sql.catalog.auditlake=org.apache.iceberg.spark.SparkCatalog\n\
                 --   spark.sql.catalog.auditlake.type=jdbc\n\
                 --   spark.sql.catalog.auditlake.uri={jdbc}\n\
                 --   spark.sql.catalog.auditlake.warehouse={warehouse}\n\
                 --   SELECT count(*) FROM auditlake.{first};\n\
                 \n-- Trino (etc/catalog/auditlake.properties):\n\
                 --   connector.name=iceberg\n\
                 --   iceberg.catalog.type=jdbc\n\
                 --   iceberg.jdbc-catalog.catalog-name=auditlake\n\
                 --   iceberg.jdbc-catalog.driver-class={driver}\n\
                 --   iceberg.jdbc-catalog.connection-url={jdbc}\n\
                 --   iceberg.jdbc-catalog.default-warehouse-dir={warehouse}\n\
                 \n-- DuckDB (LOAD iceberg): a table's current metadata file, as pyiceberg prints it\n\
                 -- (cat.load_table(\"{first}\").metadata_location):\n\
                 --   SELECT count(*) FROM iceberg_scan('<metadata_location>');\n"
            ));
        }
        CatalogKind::Rest => {
            let uri = redact_uri(cfg.catalog_uri.as_deref().unwrap_or("<catalog_uri>"));
            let wh = cfg
                .warehouse
                .clone()
                .unwrap_or_else(|| "<warehouse>".into());
            out.push_str(&format!(
                "\n-- pyiceberg:\n\
                 --   from pyiceberg.catalog.rest import RestCatalog\n\
                 --   cat = RestCatalog(\"auditlake\", uri=\"{uri}\", warehouse=\"{wh}\")\n\
                 \n-- Spark:\n\
                 --   spark.sql.catalog.auditlake=org.apache.iceberg.spark.SparkCatalog\n\
                 --   spark.sql.catalog.auditlake.type=rest\n\
                 --   spark.sql.catalog.auditlake.uri={uri}\n\
                 --   spark.sql.catalog.auditlake.warehouse={wh}\n\
                 \n-- Trino (etc/catalog/auditlake.properties):\n\
                 --   connector.name=iceberg\n\
                 --   iceberg.catalog.type=rest\n\
                 --   iceberg.rest-catalog.uri={uri}\n\
                 --   iceberg.rest-catalog.warehouse={wh}\n\
                 \n-- DuckDB (LOAD iceberg):\n\
                 --   ATTACH '{wh}' AS auditlake (TYPE iceberg, ENDPOINT '{uri}');\n\
                 --   SELECT count(*) FROM auditlake.{first};\n"
            ));
        }
        CatalogKind::Glue => {
            let account = cfg
                .catalog_id
                .clone()
                .unwrap_or_else(|| "<account id>".into());
            out.push_str(&format!(
                "\n-- Athena (the Glue database {ns:?} holds the Iceberg tables; Athena reads them as they are):\n\
                 SELECT count(*) FROM \"{ns}\".\"ciem_events\";\n\
                 \n-- pyiceberg (pip install \"pyiceberg[glue,pyarrow]\"):\n\
                 --   from pyiceberg.catalog.glue import GlueCatalog\n\
                 --   cat = GlueCatalog(\"auditlake\"{py_s3})\n\
                 --   cat.load_table(\"{first}\").scan().to_arrow()\n\
                 \n-- Spark (iceberg-spark-runtime and iceberg-aws-bundle):\n\
                 --   spark.sql.catalog.auditlake=org.apache.iceberg.spark.SparkCatalog\n\
                 --   spark.sql.catalog.auditlake.catalog-impl=org.apache.iceberg.aws.glue.GlueCatalog\n\
                 --   spark.sql.catalog.auditlake.io-impl=org.apache.iceberg.aws.s3.S3FileIO\n\
                 --   spark.sql.catalog.auditlake.warehouse={warehouse}\n\
                 \n-- Trino (etc/catalog/auditlake.properties):\n\
                 --   connector.name=iceberg\n\
                 --   iceberg.catalog.type=glue\n\
                 \n-- DuckDB (LOAD iceberg; LOAD httpfs; CREATE SECRET (TYPE s3, PROVIDER credential_chain)):\n\
                 --   ATTACH '{account}' AS auditlake (TYPE iceberg, ENDPOINT_TYPE glue);\n\
                 --   SELECT count(*) FROM auditlake.{first};\n"
            ));
        }
    }
    out
}

/// The batch ids a table's snapshots record.
fn batches_of(table: &Table) -> impl Iterator<Item = &str> {
    table
        .metadata()
        .snapshots()
        .filter_map(|s| s.summary().additional_properties.get(BATCH_PROPERTY))
        .map(String::as_str)
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
        .properties(
            (spec.name == COMMIT_POINT)
                .then(|| {
                    (
                        KEY_SEED_PROPERTY.to_string(),
                        format!("{:016x}", super::keys::new_seed()),
                    )
                })
                .into_iter()
                .chain([
                    ("auditlake.schema_version".to_string(), spec.version.clone()),
                    // Writers of several hosts commit at once: retry on conflict for up to 5 minutes.
                    ("commit.retry.num-retries".to_string(), "20".to_string()),
                    (
                        "commit.retry.total-timeout-ms".to_string(),
                        "300000".to_string(),
                    ),
                ]),
        )
        .build())
}

#[cfg(test)]
impl IcebergTables {
    /// Per table, (batch id, rows added) of each snapshot, as the catalog holds them now.
    pub(crate) fn snapshot_rows(&mut self) -> BTreeMap<String, Vec<(String, u64)>> {
        self.committed().expect("load");
        self.tables
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

    impl Remote for FirstTableOnly {
        fn put(&mut self, _: &str, _: &Path) -> Result<(), SinkError> {
            Ok(())
        }
        fn delete(&mut self, _: &str) -> Result<(), SinkError> {
            Ok(())
        }
        fn commit(&mut self, commit: &BatchCommit<'_>) -> Result<(), SinkError> {
            let first = commit.files[0]
                .path
                .split('/')
                .next()
                .unwrap_or_default()
                .to_string();
            let only: Vec<CommittedFile> = commit
                .files
                .iter()
                .filter(|f| f.path.starts_with(&first))
                .cloned()
                .collect();
            self.0.append(&BatchCommit {
                files: &only,
                ..*commit
            })?;
            Err(SinkError::Iceberg("the process died here".into()))
        }
        fn committed(&mut self) -> Result<BTreeSet<String>, SinkError> {
            self.0.committed()
        }
        fn local_is_staging(&self) -> bool {
            false
        }
    }

    /// The Parquet options of an Iceberg lake.
    fn iceberg_parquet() -> crate::sink::parquet::ParquetOptions {
        crate::sink::parquet::ParquetOptions {
            timestamps_us: true,
            ..Default::default()
        }
    }

    /// A dead letter of `in.json`, position 0, from 2023-11-14.
    fn dead_letter() -> crate::event::DeadLetter {
        let origin = crate::event::Origin {
            source: "in.json".into(),
            partition: None,
            position: 0,
        };
        crate::event::DeadLetter::new("p".into(), origin, "bad", b"{", 100, 1_700_000_000_000)
    }

    #[test]
    fn a_batch_committed_to_some_tables_is_finished_on_reopen_not_removed() {
        use crate::assets::{AssetChange, ChangeOrigin, ChangeType};
        use crate::event::Provider;
        use crate::sink::lake::{LocalLake, PendingBatch};
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let cfg = IcebergConfig::default();
        let options = iceberg_parquet();
        let batch = PendingBatch {
            dead_letters: vec![dead_letter()],
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
            let remote = FirstTableOnly(IcebergTables::open(root, &cfg, None).expect("tables"));
            let mut lake = LocalLake::open_instance(root, options, None, Some(Box::new(remote)))
                .expect("lake");
            let err = lake.commit(batch).expect_err("the commit dies half-way");
            assert!(err.to_string().contains("the process died here"), "{err}");
            // crash
        }
        let mut tables = IcebergTables::open(root, &cfg, None).expect("tables");
        let before = tables.snapshot_rows();
        let started: Vec<_> = before
            .iter()
            .filter(|(_, s)| !s.is_empty())
            .map(|(n, _)| n.clone())
            .collect();
        assert_eq!(
            started,
            ["ciem_events", "dead_letters"],
            "the commit point (no rows for it) and one table committed before the crash: {before:?}"
        );
        drop(tables);

        let lake = LocalLake::open_instance(
            root,
            options,
            None,
            Some(Box::new(
                IcebergTables::open(root, &cfg, None).expect("tables"),
            )),
        )
        .expect("reopen");
        assert!(
            lake.unit("file:in").is_some_and(|u| u.complete),
            "the batch is recorded"
        );
        drop(lake);
        let mut tables = IcebergTables::open(root, &cfg, None).expect("tables");
        let after = tables.snapshot_rows();
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

    /// A batch the journal left prepared long ago, whose id the tables no longer name (it aged
    /// out with expired snapshots) but whose input they hold: its files may be referenced, so
    /// they are kept. A recent one (another writer committed its input) and one whose input the
    /// tables lack are removed.
    #[test]
    fn an_unfinished_batch_whose_input_the_tables_hold_keeps_its_files() {
        use crate::sink::journal::{Journal, LocalOnly};
        use crate::sink::lake::{LocalLake, PendingBatch};
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let cfg = IcebergConfig::default();
        let options = iceberg_parquet();
        let held = vec![Segment {
            unit: "file:in".into(),
            from: 0,
            to: 2,
            complete: true,
        }];
        let batch = PendingBatch {
            dead_letters: vec![dead_letter()],
            segments: held.clone(),
            ..PendingBatch::default()
        };
        {
            let tables = IcebergTables::open(root, &cfg, None).expect("tables");
            let mut lake = LocalLake::open_instance(root, options, None, Some(Box::new(tables)))
                .expect("lake");
            lake.commit(batch).expect("commit");
        }
        let kept = "dead_letters/date=2023-11-14/part-other.parquet";
        let recent = "dead_letters/date=2023-11-14/part-recent.parquet";
        let removed = "dead_letters/date=2023-11-14/part-third.parquet";
        {
            let mut journal = Journal::open_instance(root, None, &mut LocalOnly).expect("journal");
            for (id, rel, segments) in [
                ("other", kept, held.clone()),
                ("recent", recent, held.clone()),
                (
                    "third",
                    removed,
                    vec![Segment {
                        unit: "file:new".into(),
                        from: 0,
                        to: 1,
                        complete: true,
                    }],
                ),
            ] {
                journal
                    .prepare(id, vec![rel.to_string()], segments)
                    .expect("prepare");
                std::fs::write(root.join(rel), b"written before the crash").expect("write");
            }
            let long_ago =
                std::time::SystemTime::now() - std::time::Duration::from_secs(40 * 86_400);
            std::fs::File::options()
                .write(true)
                .open(root.join(kept))
                .and_then(|f| f.set_modified(long_ago))
                .expect("backdate");
        }
        let tables = IcebergTables::open(root, &cfg, None).expect("tables");
        let lake =
            LocalLake::open_instance(root, options, None, Some(Box::new(tables))).expect("reopen");
        assert!(
            root.join(kept).exists(),
            "the old held batch's file is kept"
        );
        assert!(
            !root.join(recent).exists(),
            "a recent one's is removed: unreferenced"
        );
        assert!(!root.join(removed).exists(), "the other one's is removed");
        assert!(lake.unit("file:in").is_some_and(|u| u.complete));
        assert!(lake.unit("file:new").is_none(), "its input is read again");
    }

    #[test]
    fn a_unit_covers_whole_segments_only() {
        let mut u = UnitState::default();
        let seg = |from, to, complete| Segment {
            unit: "u".into(),
            from,
            to,
            complete,
        };
        u.add_segment(&seg(0, 10, false));
        assert!(u.covers(&seg(2, 10, false)));
        assert!(!u.covers(&seg(5, 11, false)));
        assert!(!u.covers(&seg(10, 12, false)));
        assert!(!u.covers(&seg(0, 10, true)), "not its end");
        u.add_segment(&seg(10, 10, true));
        assert!(u.covers(&seg(0, 10, true)));
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
    fn catalog_uris_are_shown_without_passwords() {
        assert_eq!(
            redact_uri("postgres://u:secret@db:5432/lake"),
            "postgres://***@db:5432/lake"
        );
        assert_eq!(redact_uri("sqlite:///x/c.db"), "sqlite:///x/c.db");
        let cfg = IcebergConfig {
            catalog_uri: Some("postgres://u:pw-123@h/db".into()),
            ..Default::default()
        };
        assert!(!format!("{cfg:?}").contains("pw-123"), "{cfg:?}");
        let lake = crate::sink::LakeConfig {
            format: crate::sink::LakeFormat::Iceberg,
            iceberg: Some(cfg),
            ..Default::default()
        };
        let setup = reader_setup(&lake);
        assert!(!setup.contains("pw-123"), "{setup}");
        assert!(
            setup.contains("iceberg.jdbc-catalog.connection-url=jdbc:postgresql://h/db"),
            "{setup}"
        );
    }

    /// `schema --ddl iceberg` names the warehouse the writers use, whether it is configured
    /// as a URL (a trailing slash is dropped), as a directory, or left to the default.
    #[test]
    fn schema_ddl_names_the_writers_warehouse() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake_path = dir.path().join("lake");
        let own_dir = dir.path().join("tables");
        for configured in [
            None,
            Some("s3://bucket/tables/".to_string()),
            Some(own_dir.display().to_string()),
        ] {
            let cfg = IcebergConfig {
                warehouse: configured.clone(),
                ..Default::default()
            };
            let written = cfg.warehouse(&lake_path, None).expect("warehouse");
            let lake = crate::sink::LakeConfig {
                path: lake_path.clone(),
                format: crate::sink::LakeFormat::Iceberg,
                iceberg: Some(cfg),
                ..Default::default()
            };
            let setup = reader_setup(&lake);
            assert!(
                setup.contains(&format!("-- Warehouse: {written}\n")),
                "{configured:?}: the writers use {written}; schema --ddl says:\n{setup}"
            );
        }
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
