//! A catalog that checks a table each time a commit loads it: the hook that makes an Iceberg
//! append conditional on more than the table's version.
//!
//! iceberg-rust's `Transaction::commit` loads the table, builds the append on it (requiring
//! the branch to still point at the snapshot it loaded) and swaps the metadata in; on a
//! conflict it loads again and rebuilds. Each of those loads goes through
//! [`FencedCatalog::load_table`], which runs a [`LoadCheck`] on the table it loaded: a check
//! that refuses (a non-retryable error) stops the commit, and a check that passes holds for
//! the swap, because the swap fails if anyone committed after that load. The lake uses it to
//! refuse a batch whose input another writer committed meanwhile ([`super::iceberg`]).

use std::collections::HashMap;

use async_trait::async_trait;
use iceberg::table::Table;
use iceberg::{Catalog, Namespace, NamespaceIdent, Result, TableCommit, TableCreation, TableIdent};

/// What a commit checks each time it loads the fenced table.
#[async_trait]
pub trait LoadCheck: Send + Sync {
    /// Ok to go on committing on top of `table`; an error (not retryable) stops the commit.
    async fn check(&self, table: &Table) -> Result<()>;
}

/// `inner`, with `check` run on every load of `table`.
pub struct FencedCatalog<'a> {
    pub inner: &'a dyn Catalog,
    pub table: &'a TableIdent,
    pub check: &'a dyn LoadCheck,
}

impl std::fmt::Debug for FencedCatalog<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FencedCatalog")
            .field("table", self.table)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Catalog for FencedCatalog<'_> {
    async fn load_table(&self, table: &TableIdent) -> Result<Table> {
        let loaded = self.inner.load_table(table).await?;
        if table == self.table {
            self.check.check(&loaded).await?;
        }
        Ok(loaded)
    }

    async fn update_table(&self, commit: TableCommit) -> Result<Table> {
        self.inner.update_table(commit).await
    }

    async fn list_namespaces(
        &self,
        parent: Option<&NamespaceIdent>,
    ) -> Result<Vec<NamespaceIdent>> {
        self.inner.list_namespaces(parent).await
    }

    async fn create_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> Result<Namespace> {
        self.inner.create_namespace(namespace, properties).await
    }

    async fn get_namespace(&self, namespace: &NamespaceIdent) -> Result<Namespace> {
        self.inner.get_namespace(namespace).await
    }

    async fn namespace_exists(&self, namespace: &NamespaceIdent) -> Result<bool> {
        self.inner.namespace_exists(namespace).await
    }

    async fn update_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> Result<()> {
        self.inner.update_namespace(namespace, properties).await
    }

    async fn drop_namespace(&self, namespace: &NamespaceIdent) -> Result<()> {
        self.inner.drop_namespace(namespace).await
    }

    async fn list_tables(&self, namespace: &NamespaceIdent) -> Result<Vec<TableIdent>> {
        self.inner.list_tables(namespace).await
    }

    async fn create_table(
        &self,
        namespace: &NamespaceIdent,
        creation: TableCreation,
    ) -> Result<Table> {
        self.inner.create_table(namespace, creation).await
    }

    async fn drop_table(&self, table: &TableIdent) -> Result<()> {
        self.inner.drop_table(table).await
    }

    async fn purge_table(&self, table: &TableIdent) -> Result<()> {
        self.inner.purge_table(table).await
    }

    async fn table_exists(&self, table: &TableIdent) -> Result<bool> {
        self.inner.table_exists(table).await
    }

    async fn rename_table(&self, src: &TableIdent, dest: &TableIdent) -> Result<()> {
        self.inner.rename_table(src, dest).await
    }

    async fn register_table(&self, table: &TableIdent, metadata_location: String) -> Result<Table> {
        self.inner.register_table(table, metadata_location).await
    }
}
