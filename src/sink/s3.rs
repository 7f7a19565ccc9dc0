//! The lake in an S3 bucket: committed Parquet files are uploaded with multipart uploads (an
//! object appears only once complete) under `s3://<bucket>/<prefix>/`, with the same layout as
//! the local lake. The commit journal stays in the local directory (`[sink] path`), which also
//! stages each file until it is uploaded; files of a batch left unfinished by a crash are
//! deleted from the bucket when the lake is opened again.

use std::io::Read;
use std::path::Path;

use serde::Deserialize;

use super::lake::{LocalLake, Remote};
use super::{LakeConfig, SinkError};
use crate::aws::{config_loader, error_chain};

/// `[sink.s3]`: publish the lake to a bucket.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3LakeConfig {
    pub bucket: String,
    /// Key prefix of the lake (`ciem_events/…` and `dead_letters/…` go under it).
    #[serde(default)]
    pub prefix: String,
    /// Default: the AWS default chain's region.
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub profile: Option<String>,
    /// S3-compatible store or emulator; path-style addressing is then used unless
    /// `force_path_style = false`.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    #[serde(default)]
    pub force_path_style: Option<bool>,
    /// Multipart part size in MiB (S3 requires at least 5).
    #[serde(default = "default_part_mib")]
    pub part_size_mib: usize,
}

impl S3LakeConfig {
    /// The `s3://` URL of `rel` (a path relative to the lake root) in this bucket and prefix.
    pub fn url(&self, rel: &str) -> String {
        object_url(&self.bucket, &self.prefix, rel)
    }
}

/// `s3://<bucket>/<prefix>/<rel>` (no empty path segment when the prefix is empty).
fn object_url(bucket: &str, prefix: &str, rel: &str) -> String {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        format!("s3://{bucket}/{rel}")
    } else {
        format!("s3://{bucket}/{prefix}/{rel}")
    }
}

fn default_part_mib() -> usize {
    8
}

/// Opens the lake a pipeline's `[sink]` describes: local, or published to S3.
pub fn open_lake(cfg: &LakeConfig) -> Result<LocalLake, SinkError> {
    if let Some(problem) = cfg.problems().into_iter().next() {
        return Err(SinkError::Config(problem));
    }
    if cfg.format == super::LakeFormat::Iceberg {
        let files = match &cfg.s3 {
            Some(s3) => {
                tracing::info!(bucket = %s3.bucket, prefix = %s3.prefix, state = %cfg.path.display(), "Iceberg tables' files in S3");
                Some(S3Remote::connect(s3)?)
            }
            None => None,
        };
        let tables = super::iceberg::IcebergTables::open(
            &cfg.path,
            &cfg.iceberg.clone().unwrap_or_default(),
            files,
        )?;
        // Writers on other hosts put files into the same tables (and bucket): every state
        // directory names its files after its own writer id, so a crashed writer's clean-up
        // never removes a file another writer wrote for the same input.
        let instance = match &cfg.instance {
            Some(i) => i.clone(),
            None => super::iceberg::writer_id(&cfg.path)?,
        };
        return LocalLake::open_instance(
            &cfg.path,
            cfg.parquet(),
            Some(&instance),
            Some(Box::new(tables)),
        );
    }
    match &cfg.s3 {
        None => LocalLake::open_instance(&cfg.path, cfg.parquet(), cfg.instance.as_deref(), None),
        Some(s3) => {
            let remote = S3Remote::connect(s3)?;
            tracing::info!(bucket = %s3.bucket, prefix = %s3.prefix, state = %cfg.path.display(), "lake output to S3");
            LocalLake::open_instance(
                &cfg.path,
                cfg.parquet(),
                cfg.instance.as_deref(),
                Some(Box::new(remote)),
            )
        }
    }
}

pub struct S3Remote {
    rt: tokio::runtime::Runtime,
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    part_size: usize,
    /// The SDK configuration it was made from (region, credential chain, endpoint), when
    /// made by [`S3Remote::connect`]: the Iceberg tables' storage signs with the same.
    sdk: Option<aws_config::SdkConfig>,
    path_style: bool,
}

fn s3_error(op: &'static str, key: &str, e: impl std::fmt::Display) -> SinkError {
    SinkError::io(op, Path::new(key), std::io::Error::other(e.to_string()))
}

impl S3Remote {
    pub fn connect(cfg: &S3LakeConfig) -> Result<Self, SinkError> {
        if cfg.bucket.trim().is_empty() {
            return Err(SinkError::Config("[sink.s3] bucket is empty".to_string()));
        }
        if cfg.part_size_mib < 5 {
            return Err(SinkError::Config(
                "[sink.s3] part_size_mib must be at least 5".to_string(),
            ));
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| SinkError::io("start a runtime for", Path::new("S3"), e))?;
        let sdk = rt.block_on(
            config_loader(
                cfg.region.as_deref(),
                cfg.profile.as_deref(),
                cfg.endpoint_url.as_deref(),
            )
            .load(),
        );
        if sdk.region().is_none() {
            return Err(SinkError::Config(
                "[sink.s3] no AWS region: set `region` or AWS_REGION".to_string(),
            ));
        }
        let path_style = cfg.force_path_style.unwrap_or(cfg.endpoint_url.is_some());
        let conf = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(path_style)
            .build();
        Ok(S3Remote {
            rt,
            client: aws_sdk_s3::Client::from_conf(conf),
            bucket: cfg.bucket.clone(),
            prefix: cfg.prefix.trim_matches('/').to_string(),
            part_size: cfg.part_size_mib << 20,
            sdk: Some(sdk),
            path_style,
        })
    }

    /// A remote using an existing client (`part_size_mib` at least 5).
    pub fn with_client(
        client: aws_sdk_s3::Client,
        bucket: &str,
        prefix: &str,
        part_size_mib: usize,
    ) -> Result<Self, SinkError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| SinkError::io("start a runtime for", Path::new("S3"), e))?;
        Ok(S3Remote {
            rt,
            client,
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            part_size: part_size_mib.max(5) << 20,
            sdk: None,
            path_style: false,
        })
    }

    /// The SDK configuration of [`S3Remote::connect`] (None for [`S3Remote::with_client`]).
    pub fn sdk_config(&self) -> Option<&aws_config::SdkConfig> {
        self.sdk.as_ref()
    }

    /// Whether requests use path-style addressing (an endpoint override, by default).
    pub fn path_style(&self) -> bool {
        self.path_style
    }

    /// The `s3://` URL of a path relative to the lake root.
    pub fn url(&self, rel: &str) -> String {
        object_url(&self.bucket, &self.prefix, rel)
    }

    fn key(&self, rel: &str) -> String {
        if self.prefix.is_empty() {
            rel.to_string()
        } else {
            format!("{}/{rel}", self.prefix)
        }
    }

    /// Runs a future to completion on this remote's runtime ([`super::block_on`]).
    fn block_on<T: Send>(&self, fut: impl std::future::Future<Output = T> + Send) -> T {
        super::block_on(&self.rt, fut)
    }

    async fn upload(&self, key: &str, local: &Path) -> Result<(), SinkError> {
        use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
        let mut file = std::fs::File::open(local).map_err(|e| SinkError::io("open", local, e))?;
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| s3_error("start the upload of", key, error_chain(&e)))?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| s3_error("start the upload of", key, "no upload id in the answer"))?
            .to_string();
        let result: Result<Vec<CompletedPart>, SinkError> = async {
            let mut parts = Vec::new();
            let mut number = 1;
            loop {
                let mut buf = Vec::with_capacity(self.part_size);
                (&mut file)
                    .take(self.part_size as u64)
                    .read_to_end(&mut buf)
                    .map_err(|e| SinkError::io("read", local, e))?;
                if buf.is_empty() && number > 1 {
                    break;
                }
                let last = buf.len() < self.part_size;
                let part = self
                    .client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .part_number(number)
                    .body(buf.into())
                    .send()
                    .await
                    .map_err(|e| s3_error("upload a part of", key, error_chain(&e)))?;
                parts.push(
                    CompletedPart::builder()
                        .set_e_tag(part.e_tag().map(str::to_string))
                        .part_number(number)
                        .build(),
                );
                number += 1;
                if last {
                    break;
                }
            }
            Ok(parts)
        }
        .await;
        let completed = match result {
            Ok(parts) => self
                .client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map(|_| ())
                .map_err(|e| s3_error("complete the upload of", key, error_chain(&e))),
            Err(e) => Err(e),
        };
        if completed.is_err() {
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        completed
    }
}

impl Remote for S3Remote {
    fn put(&mut self, rel: &str, local: &Path) -> Result<(), SinkError> {
        let key = self.key(rel);
        self.block_on(self.upload(&key, local))?;
        tracing::debug!(bucket = %self.bucket, key = %key, "uploaded");
        Ok(())
    }

    fn delete(&mut self, rel: &str) -> Result<(), SinkError> {
        let key = self.key(rel);
        self.block_on(
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(&key)
                .send(),
        )
        .map_err(|e| s3_error("delete", &key, error_chain(&e)))?;
        tracing::warn!(bucket = %self.bucket, key = %key, "removed file of an unfinished batch from S3");
        Ok(())
    }
}
