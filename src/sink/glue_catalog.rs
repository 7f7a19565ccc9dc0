//! The AWS Glue Data Catalog as the Iceberg catalog of the lake's tables
//! (`[sink.iceberg] catalog = "glue"`), the way Iceberg's Java `GlueCatalog` keeps tables:
//! a Glue database per namespace, a Glue table per Iceberg table with the parameters
//! `table_type = ICEBERG` and `metadata_location`, and a commit as `UpdateTable` conditioned on
//! the table's `VersionId` (Glue's optimistic lock), so Athena and every Iceberg engine read
//! the tables as they are.
//!
//! Ours rather than the `iceberg-catalog-glue` crate: its 0.10.1 refuses to describe a
//! `timestamptz` column in the Glue table (every auditlake table has one); here such columns
//! are Glue `timestamp` columns, as Java's catalog describes them. Table metadata and the data
//! files are written through iceberg's `FileIO` (S3).

use std::collections::HashMap;
use std::str::FromStr;

use async_trait::async_trait;
use aws_sdk_glue::types::{Column, DatabaseInput, StorageDescriptor, TableInput};
use iceberg::io::FileIO;
use iceberg::spec::{PrimitiveType, TableMetadata, TableMetadataBuilder, Type};
use iceberg::table::Table;
use iceberg::{
    Catalog, Error, ErrorKind, MetadataLocation, Namespace, NamespaceIdent, Result, Runtime,
    TableCommit, TableCreation, TableIdent,
};

/// Glue table parameter naming the current metadata file.
const METADATA_LOCATION: &str = "metadata_location";
const PREVIOUS_METADATA_LOCATION: &str = "previous_metadata_location";

pub struct GlueCatalog {
    client: aws_sdk_glue::Client,
    catalog_id: Option<String>,
    /// `s3://…`: new tables go to `<warehouse>/<database>.db/<table>`.
    warehouse: String,
    file_io: FileIO,
    runtime: Runtime,
}

impl std::fmt::Debug for GlueCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlueCatalog")
            .field("catalog_id", &self.catalog_id)
            .field("warehouse", &self.warehouse)
            .finish_non_exhaustive()
    }
}

fn aws_error(what: String, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::new(
        ErrorKind::Unexpected,
        format!("{what}: {}", crate::aws::error_chain(&e)),
    )
}

fn unsupported(what: &str) -> Error {
    Error::new(
        ErrorKind::FeatureUnsupported,
        format!("{what} is not offered by auditlake's Glue catalog"),
    )
}

/// The Glue database of a namespace (one level).
fn database(namespace: &NamespaceIdent) -> Result<String> {
    match namespace.as_ref().as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(Error::new(
            ErrorKind::DataInvalid,
            format!("a Glue namespace has one level: {namespace:?}"),
        )),
    }
}

/// The Hive type Glue shows for an Iceberg type.
fn glue_type(t: &Type) -> String {
    match t {
        Type::Primitive(p) => match p {
            PrimitiveType::Boolean => "boolean".into(),
            PrimitiveType::Int => "int".into(),
            PrimitiveType::Long => "bigint".into(),
            PrimitiveType::Float => "float".into(),
            PrimitiveType::Double => "double".into(),
            PrimitiveType::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
            PrimitiveType::Date => "date".into(),
            PrimitiveType::Time | PrimitiveType::String | PrimitiveType::Uuid => "string".into(),
            PrimitiveType::Timestamp
            | PrimitiveType::Timestamptz
            | PrimitiveType::TimestampNs
            | PrimitiveType::TimestamptzNs => "timestamp".into(),
            PrimitiveType::Fixed(_) | PrimitiveType::Binary => "binary".into(),
        },
        Type::Struct(s) => format!(
            "struct<{}>",
            s.fields()
                .iter()
                .map(|f| format!("{}:{}", f.name, glue_type(&f.field_type)))
                .collect::<Vec<_>>()
                .join(",")
        ),
        Type::List(l) => format!("array<{}>", glue_type(&l.element_field.field_type)),
        Type::Map(m) => format!(
            "map<{},{}>",
            glue_type(&m.key_field.field_type),
            glue_type(&m.value_field.field_type)
        ),
    }
}

/// The Glue table input describing an Iceberg table at `metadata_location`.
fn table_input(
    name: &str,
    metadata: &TableMetadata,
    metadata_location: &str,
    previous: Option<&str>,
) -> Result<TableInput> {
    let columns = metadata
        .current_schema()
        .as_struct()
        .fields()
        .iter()
        .map(|f| {
            Column::builder()
                .name(&f.name)
                .r#type(glue_type(&f.field_type))
                .build()
                .map_err(|e| aws_error(format!("Glue column {}", f.name), e))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut parameters = HashMap::from([
        ("table_type".to_string(), "ICEBERG".to_string()),
        (METADATA_LOCATION.to_string(), metadata_location.to_string()),
    ]);
    if let Some(p) = previous {
        parameters.insert(PREVIOUS_METADATA_LOCATION.to_string(), p.to_string());
    }
    TableInput::builder()
        .name(name)
        .table_type("EXTERNAL_TABLE")
        .set_parameters(Some(parameters))
        .storage_descriptor(
            StorageDescriptor::builder()
                .location(metadata.location())
                .set_columns(Some(columns))
                .build(),
        )
        .build()
        .map_err(|e| aws_error(format!("Glue table {name}"), e))
}

impl GlueCatalog {
    pub fn new(
        sdk: &aws_config::SdkConfig,
        endpoint: Option<&str>,
        catalog_id: Option<String>,
        warehouse: String,
        file_io: FileIO,
        runtime: Runtime,
    ) -> Self {
        let mut conf = aws_sdk_glue::config::Builder::from(sdk);
        if let Some(e) = endpoint {
            conf = conf.endpoint_url(e);
        }
        GlueCatalog {
            client: aws_sdk_glue::Client::from_conf(conf.build()),
            catalog_id,
            warehouse: warehouse.trim_end_matches('/').to_string(),
            file_io,
            runtime,
        }
    }

    /// The Glue table: (its metadata location, its version id), or None when missing.
    async fn glue_table(&self, table: &TableIdent) -> Result<Option<(String, Option<String>)>> {
        let db = database(table.namespace())?;
        let out = self
            .client
            .get_table()
            .set_catalog_id(self.catalog_id.clone())
            .database_name(&db)
            .name(table.name())
            .send()
            .await;
        let out = match out {
            Ok(o) => o,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_entity_not_found_exception()) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(aws_error(format!("Glue GetTable {db}.{}", table.name()), e)),
        };
        let Some(t) = out.table() else {
            return Ok(None);
        };
        let location = t
            .parameters()
            .and_then(|p| p.get(METADATA_LOCATION))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::DataInvalid,
                    format!(
                        "Glue table {db}.{} is not an Iceberg table (no {METADATA_LOCATION})",
                        table.name()
                    ),
                )
            })?;
        Ok(Some((location.clone(), t.version_id().map(str::to_string))))
    }

    async fn read(&self, ident: &TableIdent, location: &str) -> Result<Table> {
        let metadata = TableMetadata::read_from(&self.file_io, location).await?;
        Table::builder()
            .file_io(self.file_io.clone())
            .metadata_location(location)
            .metadata(metadata)
            .identifier(ident.clone())
            .runtime(self.runtime.clone())
            .build()
    }
}

#[async_trait]
impl Catalog for GlueCatalog {
    async fn list_namespaces(
        &self,
        parent: Option<&NamespaceIdent>,
    ) -> Result<Vec<NamespaceIdent>> {
        if parent.is_some() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .get_databases()
                .set_catalog_id(self.catalog_id.clone())
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| aws_error("Glue GetDatabases".into(), e))?;
            out.extend(
                page.database_list()
                    .iter()
                    .map(|d| NamespaceIdent::new(d.name().to_string())),
            );
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    async fn create_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> Result<Namespace> {
        let db = database(namespace)?;
        let input = DatabaseInput::builder()
            .name(&db)
            .set_parameters(Some(properties.clone()))
            .build()
            .map_err(|e| aws_error(format!("Glue database {db}"), e))?;
        self.client
            .create_database()
            .set_catalog_id(self.catalog_id.clone())
            .database_input(input)
            .send()
            .await
            .map_err(|e| aws_error(format!("Glue CreateDatabase {db}"), e))?;
        Ok(Namespace::with_properties(namespace.clone(), properties))
    }

    async fn get_namespace(&self, namespace: &NamespaceIdent) -> Result<Namespace> {
        if self.namespace_exists(namespace).await? {
            Ok(Namespace::new(namespace.clone()))
        } else {
            Err(Error::new(
                ErrorKind::NamespaceNotFound,
                format!("no Glue database {namespace:?}"),
            ))
        }
    }

    async fn namespace_exists(&self, namespace: &NamespaceIdent) -> Result<bool> {
        let db = database(namespace)?;
        match self
            .client
            .get_database()
            .set_catalog_id(self.catalog_id.clone())
            .name(&db)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_entity_not_found_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(aws_error(format!("Glue GetDatabase {db}"), e)),
        }
    }

    async fn update_namespace(
        &self,
        _namespace: &NamespaceIdent,
        _properties: HashMap<String, String>,
    ) -> Result<()> {
        Err(unsupported("updating a namespace"))
    }

    async fn drop_namespace(&self, _namespace: &NamespaceIdent) -> Result<()> {
        Err(unsupported("dropping a namespace"))
    }

    async fn list_tables(&self, _namespace: &NamespaceIdent) -> Result<Vec<TableIdent>> {
        Err(unsupported("listing tables"))
    }

    async fn create_table(
        &self,
        namespace: &NamespaceIdent,
        mut creation: TableCreation,
    ) -> Result<Table> {
        let db = database(namespace)?;
        let name = creation.name.clone();
        let location = creation
            .location
            .clone()
            .unwrap_or_else(|| format!("{}/{db}.db/{name}", self.warehouse));
        creation.location = Some(location.clone());
        let metadata = TableMetadataBuilder::from_table_creation(creation)?
            .build()?
            .metadata;
        let metadata_location = MetadataLocation::new_with_metadata(location, &metadata);
        metadata.write_to(&self.file_io, &metadata_location).await?;
        let location = metadata_location.to_string();
        self.client
            .create_table()
            .set_catalog_id(self.catalog_id.clone())
            .database_name(&db)
            .table_input(table_input(&name, &metadata, &location, None)?)
            .send()
            .await
            .map_err(|e| {
                let exists = e
                    .as_service_error()
                    .is_some_and(|s| s.is_already_exists_exception());
                let err = aws_error(format!("Glue CreateTable {db}.{name}"), e);
                if exists {
                    Error::new(ErrorKind::TableAlreadyExists, err.to_string())
                } else {
                    err
                }
            })?;
        self.read(&TableIdent::new(namespace.clone(), name), &location)
            .await
    }

    async fn load_table(&self, table: &TableIdent) -> Result<Table> {
        let (location, _) = self.glue_table(table).await?.ok_or_else(|| {
            Error::new(ErrorKind::TableNotFound, format!("no Glue table {table:?}"))
        })?;
        self.read(table, &location).await
    }

    async fn drop_table(&self, _table: &TableIdent) -> Result<()> {
        Err(unsupported("dropping a table"))
    }

    async fn purge_table(&self, _table: &TableIdent) -> Result<()> {
        Err(unsupported("purging a table"))
    }

    async fn table_exists(&self, table: &TableIdent) -> Result<bool> {
        Ok(self.glue_table(table).await?.is_some())
    }

    async fn rename_table(&self, _src: &TableIdent, _dest: &TableIdent) -> Result<()> {
        Err(unsupported("renaming a table"))
    }

    async fn register_table(
        &self,
        _table: &TableIdent,
        _metadata_location: String,
    ) -> Result<Table> {
        Err(unsupported("registering a table"))
    }

    /// Applies the commit to the table as Glue holds it now, writes the new metadata file and
    /// swaps it in with `UpdateTable` on the version read: a concurrent commit makes Glue refuse
    /// it (`ConcurrentModificationException`), and the transaction retries on the new version.
    async fn update_table(&self, commit: TableCommit) -> Result<Table> {
        let ident = commit.identifier().clone();
        let db = database(ident.namespace())?;
        let (current_location, version) = self.glue_table(&ident).await?.ok_or_else(|| {
            Error::new(ErrorKind::TableNotFound, format!("no Glue table {ident:?}"))
        })?;
        let current = self.read(&ident, &current_location).await?;
        let staged = commit.apply(current)?;
        let location = MetadataLocation::from_str(staged.metadata_location_result()?)?;
        staged
            .metadata()
            .write_to(staged.file_io(), &location)
            .await?;
        let location = location.to_string();
        self.client
            .update_table()
            .set_catalog_id(self.catalog_id.clone())
            .database_name(&db)
            .set_version_id(version)
            .skip_archive(true)
            .table_input(table_input(
                ident.name(),
                staged.metadata(),
                &location,
                Some(&current_location),
            )?)
            .send()
            .await
            .map_err(|e| {
                let conflict = e
                    .as_service_error()
                    .is_some_and(|s| s.is_concurrent_modification_exception());
                let err = aws_error(format!("Glue UpdateTable {db}.{}", ident.name()), e);
                if conflict {
                    Error::new(ErrorKind::CatalogCommitConflicts, err.to_string())
                        .with_retryable(true)
                } else {
                    err
                }
            })?;
        self.read(&ident, &location).await
    }
}
