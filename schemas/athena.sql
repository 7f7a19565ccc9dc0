-- Athena (engine v3) / Glue tables over an auditlake lake on S3 at s3://<bucket>/<prefix>.
-- Generated from schemas/*.json by `auditlake schema --ddl athena [--location s3://bucket/prefix]`;
-- do not edit by hand (a test fails when this file and the schema files disagree).
-- Athena runs one statement at a time: run each CREATE on its own.
--
-- Partitions are found by projection, not by crawlers or MSCK REPAIR: provider is an enum,
-- date a daily date range, and account is injected, so every query must name the account
-- (WHERE account = '123456789012', or account IN (...)). To query all accounts at once, make
-- it an enum: 'projection.account.type' = 'enum', 'projection.account.values' = 'id1,id2,...'.
-- Partition values are written escaped (%2F for /, a leading . as %2E, empty as unknown);
-- ordinary AWS account ids and Tencent UINs need no escaping.

CREATE EXTERNAL TABLE IF NOT EXISTS ciem_events (
  `time` timestamp,
  `class_uid` int,
  `category_uid` int,
  `activity_id` int,
  `activity_name` string,
  `type_uid` bigint,
  `status_id` int,
  `status` string,
  `severity_id` int,
  `cloud_provider` string,
  `cloud_account_uid` string,
  `cloud_region` string,
  `api_service_name` string,
  `service` string,
  `api_operation` string,
  `action` string,
  `api_version` string,
  `is_read_only` boolean,
  `api_response_error` string,
  `api_response_message` string,
  `actor_user_type` string,
  `actor_user_uid` string,
  `actor_user_uid_alt` string,
  `actor_user_name` string,
  `actor_user_account_uid` string,
  `actor_credential_uid` string,
  `actor_credential_kind` string,
  `actor_session_issuer` string,
  `actor_session_is_mfa` boolean,
  `actor_session_created_time` timestamp,
  `actor_invoked_by` string,
  `src_endpoint_ip` string,
  `src_endpoint_domain` string,
  `http_user_agent` string,
  `api_request_uid` string,
  `metadata_uid` string,
  `metadata_event_type` string,
  `metadata_product_version` string,
  `resources` array<struct<uid:string,type:string,name:string,account_uid:string>>,
  `request_data` string,
  `response_data` string,
  `additional_data` string,
  `ingest_time` timestamp,
  `origin_source` string,
  `origin_partition` int,
  `origin_position` bigint
)
PARTITIONED BY (`provider` string, `account` string, `date` string)
STORED AS PARQUET
LOCATION 's3://<bucket>/<prefix>/ciem_events/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.provider.type' = 'enum',
  'projection.provider.values' = 'aws,tencent,huawei,baidu,ctyun',
  'projection.account.type' = 'injected',
  'projection.date.type' = 'date',
  'projection.date.format' = 'yyyy-MM-dd',
  'projection.date.range' = '2013-01-01,NOW',
  'projection.date.interval' = '1',
  'projection.date.interval.unit' = 'DAYS',
  'storage.location.template' = 's3://<bucket>/<prefix>/ciem_events/provider=${provider}/account=${account}/date=${date}/'
);

CREATE EXTERNAL TABLE IF NOT EXISTS dead_letters (
  `ingest_time` timestamp,
  `pipeline` string,
  `origin_source` string,
  `origin_partition` int,
  `origin_position` bigint,
  `byte_offset` bigint,
  `line` bigint,
  `reason` string,
  `raw` string,
  `raw_truncated` boolean
)
PARTITIONED BY (`date` string)
STORED AS PARQUET
LOCATION 's3://<bucket>/<prefix>/dead_letters/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.date.type' = 'date',
  'projection.date.format' = 'yyyy-MM-dd',
  'projection.date.range' = '2013-01-01,NOW',
  'projection.date.interval' = '1',
  'projection.date.interval.unit' = 'DAYS',
  'storage.location.template' = 's3://<bucket>/<prefix>/dead_letters/date=${date}/'
);

CREATE EXTERNAL TABLE IF NOT EXISTS asset_changes (
  `time` timestamp,
  `cloud_provider` string,
  `cloud_account_uid` string,
  `cloud_region` string,
  `resource_type` string,
  `native_type` string,
  `resource_uid` string,
  `resource_name` string,
  `change_type` string,
  `origin` string,
  `action` string,
  `related_type` string,
  `related_uid` string,
  `actor_user_uid` string,
  `actor_user_name` string,
  `actor_credential_uid` string,
  `source_event_id` string,
  `sync_run_id` string,
  `before_state` string,
  `after_state` string,
  `tags` string,
  `ingest_time` timestamp
)
PARTITIONED BY (`provider` string, `account` string, `date` string)
STORED AS PARQUET
LOCATION 's3://<bucket>/<prefix>/asset_changes/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.provider.type' = 'enum',
  'projection.provider.values' = 'aws,tencent,huawei,baidu,ctyun',
  'projection.account.type' = 'injected',
  'projection.date.type' = 'date',
  'projection.date.format' = 'yyyy-MM-dd',
  'projection.date.range' = '2013-01-01,NOW',
  'projection.date.interval' = '1',
  'projection.date.interval.unit' = 'DAYS',
  'storage.location.template' = 's3://<bucket>/<prefix>/asset_changes/provider=${provider}/account=${account}/date=${date}/'
);

CREATE EXTERNAL TABLE IF NOT EXISTS asset_inventory (
  `run_id` string,
  `run_time` timestamp,
  `account_name` string,
  `cloud_provider` string,
  `cloud_account_uid` string,
  `cloud_region` string,
  `resource_type` string,
  `native_type` string,
  `resource_uid` string,
  `resource_name` string,
  `status` string,
  `created_time` timestamp,
  `attributes` string,
  `tags` string
)
PARTITIONED BY (`provider` string, `account` string, `date` string)
STORED AS PARQUET
LOCATION 's3://<bucket>/<prefix>/asset_inventory/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.provider.type' = 'enum',
  'projection.provider.values' = 'aws,tencent,huawei,baidu,ctyun',
  'projection.account.type' = 'injected',
  'projection.date.type' = 'date',
  'projection.date.format' = 'yyyy-MM-dd',
  'projection.date.range' = '2013-01-01,NOW',
  'projection.date.interval' = '1',
  'projection.date.interval.unit' = 'DAYS',
  'storage.location.template' = 's3://<bucket>/<prefix>/asset_inventory/provider=${provider}/account=${account}/date=${date}/'
);

CREATE EXTERNAL TABLE IF NOT EXISTS entitlements (
  `run_id` string,
  `run_time` timestamp,
  `account_name` string,
  `cloud_provider` string,
  `cloud_account_uid` string,
  `principal_type` string,
  `principal_uid` string,
  `principal_name` string,
  `via` string,
  `via_uid` string,
  `policy_uid` string,
  `policy_name` string,
  `policy_type` string,
  `policy_version` string,
  `statement_index` int,
  `statement_sid` string,
  `effect` string,
  `action` string,
  `not_action` boolean,
  `resource` string,
  `not_resource` boolean,
  `condition` string,
  `trusted_principal` string,
  `policy_error` string
)
PARTITIONED BY (`provider` string, `account` string, `date` string)
STORED AS PARQUET
LOCATION 's3://<bucket>/<prefix>/entitlements/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.provider.type' = 'enum',
  'projection.provider.values' = 'aws,tencent,huawei,baidu,ctyun',
  'projection.account.type' = 'injected',
  'projection.date.type' = 'date',
  'projection.date.format' = 'yyyy-MM-dd',
  'projection.date.range' = '2013-01-01,NOW',
  'projection.date.interval' = '1',
  'projection.date.interval.unit' = 'DAYS',
  'storage.location.template' = 's3://<bucket>/<prefix>/entitlements/provider=${provider}/account=${account}/date=${date}/'
);

CREATE EXTERNAL TABLE IF NOT EXISTS ciem_findings (
  `run_id` string,
  `computed_time` timestamp,
  `account_name` string,
  `cloud_provider` string,
  `cloud_account_uid` string,
  `finding_uid` string,
  `kind` string,
  `principal_type` string,
  `principal_uid` string,
  `principal_name` string,
  `resource_uid` string,
  `detail` string,
  `last_activity_time` timestamp,
  `first_seen` timestamp,
  `last_seen` timestamp,
  `tracking_period_days` int,
  `catalog` string
)
PARTITIONED BY (`provider` string, `account` string, `date` string)
STORED AS PARQUET
LOCATION 's3://<bucket>/<prefix>/ciem_findings/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.provider.type' = 'enum',
  'projection.provider.values' = 'aws,tencent,huawei,baidu,ctyun',
  'projection.account.type' = 'injected',
  'projection.date.type' = 'date',
  'projection.date.format' = 'yyyy-MM-dd',
  'projection.date.range' = '2013-01-01,NOW',
  'projection.date.interval' = '1',
  'projection.date.interval.unit' = 'DAYS',
  'storage.location.template' = 's3://<bucket>/<prefix>/ciem_findings/provider=${provider}/account=${account}/date=${date}/'
);
