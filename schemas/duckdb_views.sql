-- DuckDB views over an auditlake lake: ciem_events, dead_letters, asset_changes, asset_inventory,
-- entitlements, ciem_findings.
-- Generated from schemas/*.json by `auditlake schema --ddl duckdb`; do not edit by hand
-- (a test fails when this file and the schema files disagree).
--
-- Set the lake root, then run this file (tested with DuckDB 2.0.1; older releases may lack
-- read_parquet's allow_empty):
--   SET VARIABLE lake = '/data/lake';   -- or 's3://bucket/prefix' with the httpfs extension
--   .read schemas/duckdb_views.sql      -- the CLI; from Python, execute the file's text
-- (without the variable DuckDB refuses the views: "read_parquet" cannot take NULL list).
--
-- The views read the files when queried: they see files committed later, and the lake that
-- `lake` names at that moment. Columns have the schema's types; the partition columns
-- (provider, account, date) are strings, so account ids keep their leading zeros. A dataset
-- without files yet (asset_inventory, entitlements, ciem_findings before the first account sync)
-- is an empty view, and a file from an older schema version reads NULL for the columns it
-- lacks.

CREATE OR REPLACE VIEW ciem_events AS
SELECT * EXCLUDE ("empty") FROM (
    SELECT
        NULL::TIMESTAMPTZ AS "time",
        NULL::INTEGER AS "class_uid",
        NULL::INTEGER AS "category_uid",
        NULL::INTEGER AS "activity_id",
        NULL::VARCHAR AS "activity_name",
        NULL::BIGINT AS "type_uid",
        NULL::INTEGER AS "status_id",
        NULL::VARCHAR AS "status",
        NULL::INTEGER AS "severity_id",
        NULL::VARCHAR AS "cloud_provider",
        NULL::VARCHAR AS "cloud_account_uid",
        NULL::VARCHAR AS "cloud_region",
        NULL::VARCHAR AS "api_service_name",
        NULL::VARCHAR AS "service",
        NULL::VARCHAR AS "api_operation",
        NULL::VARCHAR AS "action",
        NULL::VARCHAR AS "api_version",
        NULL::BOOLEAN AS "is_read_only",
        NULL::VARCHAR AS "api_response_error",
        NULL::VARCHAR AS "api_response_message",
        NULL::VARCHAR AS "actor_user_type",
        NULL::VARCHAR AS "actor_user_uid",
        NULL::VARCHAR AS "actor_user_uid_alt",
        NULL::VARCHAR AS "actor_user_name",
        NULL::VARCHAR AS "actor_user_account_uid",
        NULL::VARCHAR AS "actor_credential_uid",
        NULL::VARCHAR AS "actor_credential_kind",
        NULL::VARCHAR AS "actor_session_issuer",
        NULL::BOOLEAN AS "actor_session_is_mfa",
        NULL::TIMESTAMPTZ AS "actor_session_created_time",
        NULL::VARCHAR AS "actor_invoked_by",
        NULL::VARCHAR AS "src_endpoint_ip",
        NULL::VARCHAR AS "src_endpoint_domain",
        NULL::VARCHAR AS "http_user_agent",
        NULL::VARCHAR AS "api_request_uid",
        NULL::VARCHAR AS "metadata_uid",
        NULL::VARCHAR AS "metadata_event_type",
        NULL::VARCHAR AS "metadata_product_version",
        NULL::STRUCT("uid" VARCHAR, "type" VARCHAR, "name" VARCHAR, "account_uid" VARCHAR)[] AS "resources",
        NULL::VARCHAR AS "request_data",
        NULL::VARCHAR AS "response_data",
        NULL::VARCHAR AS "additional_data",
        NULL::TIMESTAMPTZ AS "ingest_time",
        NULL::VARCHAR AS "origin_source",
        NULL::INTEGER AS "origin_partition",
        NULL::BIGINT AS "origin_position",
        NULL::VARCHAR AS "provider",
        NULL::VARCHAR AS "account",
        NULL::VARCHAR AS "date",
        NULL::BOOLEAN AS "empty"
    WHERE false
    UNION ALL BY NAME
    SELECT * FROM read_parquet(
        getvariable('lake') || '/ciem_events/*/*/*/*.parquet',
        hive_partitioning = true, hive_types_autocast = false,
        union_by_name = true, allow_empty = true)
);

CREATE OR REPLACE VIEW dead_letters AS
SELECT * EXCLUDE ("empty") FROM (
    SELECT
        NULL::TIMESTAMPTZ AS "ingest_time",
        NULL::VARCHAR AS "pipeline",
        NULL::VARCHAR AS "origin_source",
        NULL::INTEGER AS "origin_partition",
        NULL::BIGINT AS "origin_position",
        NULL::BIGINT AS "byte_offset",
        NULL::BIGINT AS "line",
        NULL::VARCHAR AS "reason",
        NULL::VARCHAR AS "raw",
        NULL::BOOLEAN AS "raw_truncated",
        NULL::VARCHAR AS "date",
        NULL::BOOLEAN AS "empty"
    WHERE false
    UNION ALL BY NAME
    SELECT * FROM read_parquet(
        getvariable('lake') || '/dead_letters/*/*.parquet',
        hive_partitioning = true, hive_types_autocast = false,
        union_by_name = true, allow_empty = true)
);

CREATE OR REPLACE VIEW asset_changes AS
SELECT * EXCLUDE ("empty") FROM (
    SELECT
        NULL::TIMESTAMPTZ AS "time",
        NULL::VARCHAR AS "cloud_provider",
        NULL::VARCHAR AS "cloud_account_uid",
        NULL::VARCHAR AS "cloud_region",
        NULL::VARCHAR AS "resource_type",
        NULL::VARCHAR AS "native_type",
        NULL::VARCHAR AS "resource_uid",
        NULL::VARCHAR AS "resource_name",
        NULL::VARCHAR AS "change_type",
        NULL::VARCHAR AS "origin",
        NULL::VARCHAR AS "action",
        NULL::VARCHAR AS "related_type",
        NULL::VARCHAR AS "related_uid",
        NULL::VARCHAR AS "actor_user_uid",
        NULL::VARCHAR AS "actor_user_name",
        NULL::VARCHAR AS "actor_credential_uid",
        NULL::VARCHAR AS "source_event_id",
        NULL::VARCHAR AS "sync_run_id",
        NULL::VARCHAR AS "before_state",
        NULL::VARCHAR AS "after_state",
        NULL::VARCHAR AS "tags",
        NULL::TIMESTAMPTZ AS "ingest_time",
        NULL::VARCHAR AS "provider",
        NULL::VARCHAR AS "account",
        NULL::VARCHAR AS "date",
        NULL::BOOLEAN AS "empty"
    WHERE false
    UNION ALL BY NAME
    SELECT * FROM read_parquet(
        getvariable('lake') || '/asset_changes/*/*/*/*.parquet',
        hive_partitioning = true, hive_types_autocast = false,
        union_by_name = true, allow_empty = true)
);

CREATE OR REPLACE VIEW asset_inventory AS
SELECT * EXCLUDE ("empty") FROM (
    SELECT
        NULL::VARCHAR AS "run_id",
        NULL::TIMESTAMPTZ AS "run_time",
        NULL::VARCHAR AS "account_name",
        NULL::VARCHAR AS "cloud_provider",
        NULL::VARCHAR AS "cloud_account_uid",
        NULL::VARCHAR AS "cloud_region",
        NULL::VARCHAR AS "resource_type",
        NULL::VARCHAR AS "native_type",
        NULL::VARCHAR AS "resource_uid",
        NULL::VARCHAR AS "resource_name",
        NULL::VARCHAR AS "status",
        NULL::TIMESTAMPTZ AS "created_time",
        NULL::VARCHAR AS "attributes",
        NULL::VARCHAR AS "tags",
        NULL::VARCHAR AS "provider",
        NULL::VARCHAR AS "account",
        NULL::VARCHAR AS "date",
        NULL::BOOLEAN AS "empty"
    WHERE false
    UNION ALL BY NAME
    SELECT * FROM read_parquet(
        getvariable('lake') || '/asset_inventory/*/*/*/*.parquet',
        hive_partitioning = true, hive_types_autocast = false,
        union_by_name = true, allow_empty = true)
);

CREATE OR REPLACE VIEW entitlements AS
SELECT * EXCLUDE ("empty") FROM (
    SELECT
        NULL::VARCHAR AS "run_id",
        NULL::TIMESTAMPTZ AS "run_time",
        NULL::VARCHAR AS "account_name",
        NULL::VARCHAR AS "cloud_provider",
        NULL::VARCHAR AS "cloud_account_uid",
        NULL::VARCHAR AS "principal_type",
        NULL::VARCHAR AS "principal_uid",
        NULL::VARCHAR AS "principal_name",
        NULL::VARCHAR AS "via",
        NULL::VARCHAR AS "via_uid",
        NULL::VARCHAR AS "policy_uid",
        NULL::VARCHAR AS "policy_name",
        NULL::VARCHAR AS "policy_type",
        NULL::VARCHAR AS "policy_version",
        NULL::INTEGER AS "statement_index",
        NULL::VARCHAR AS "statement_sid",
        NULL::VARCHAR AS "effect",
        NULL::VARCHAR AS "action",
        NULL::BOOLEAN AS "not_action",
        NULL::VARCHAR AS "resource",
        NULL::BOOLEAN AS "not_resource",
        NULL::VARCHAR AS "condition",
        NULL::VARCHAR AS "trusted_principal",
        NULL::VARCHAR AS "policy_error",
        NULL::VARCHAR AS "provider",
        NULL::VARCHAR AS "account",
        NULL::VARCHAR AS "date",
        NULL::BOOLEAN AS "empty"
    WHERE false
    UNION ALL BY NAME
    SELECT * FROM read_parquet(
        getvariable('lake') || '/entitlements/*/*/*/*.parquet',
        hive_partitioning = true, hive_types_autocast = false,
        union_by_name = true, allow_empty = true)
);

CREATE OR REPLACE VIEW ciem_findings AS
SELECT * EXCLUDE ("empty") FROM (
    SELECT
        NULL::VARCHAR AS "run_id",
        NULL::TIMESTAMPTZ AS "computed_time",
        NULL::VARCHAR AS "account_name",
        NULL::VARCHAR AS "cloud_provider",
        NULL::VARCHAR AS "cloud_account_uid",
        NULL::VARCHAR AS "finding_uid",
        NULL::VARCHAR AS "kind",
        NULL::VARCHAR AS "principal_type",
        NULL::VARCHAR AS "principal_uid",
        NULL::VARCHAR AS "principal_name",
        NULL::VARCHAR AS "resource_uid",
        NULL::VARCHAR AS "detail",
        NULL::TIMESTAMPTZ AS "last_activity_time",
        NULL::TIMESTAMPTZ AS "first_seen",
        NULL::TIMESTAMPTZ AS "last_seen",
        NULL::INTEGER AS "tracking_period_days",
        NULL::VARCHAR AS "catalog",
        NULL::VARCHAR AS "provider",
        NULL::VARCHAR AS "account",
        NULL::VARCHAR AS "date",
        NULL::BOOLEAN AS "empty"
    WHERE false
    UNION ALL BY NAME
    SELECT * FROM read_parquet(
        getvariable('lake') || '/ciem_findings/*/*/*/*.parquet',
        hive_partitioning = true, hive_types_autocast = false,
        union_by_name = true, allow_empty = true)
);
