#!/usr/bin/env python3
"""The benchmark's reference point: DuckDB doing auditlake's job on the same CloudTrail files.

Usage: python bench/duckdb_equivalent.py [--threads N] INPUT_DIR OUTPUT.parquet
(a Python with the duckdb package: $AUDITLAKE_PYTHON or .venv/bin/python; bench/run.sh sets it up)

Reads every *.json.gz under INPUT_DIR, unnests Records, extracts the flat CIEM columns plus
requestParameters/responseElements as JSON text, writes one ZSTD Parquet file, and prints
events, seconds and events/s.
"""
import argparse
import time

import duckdb

# Explicit columns instead of schema inference. Inference samples records and, on heterogeneous
# CloudTrail, widens requestParameters/responseElements into huge STRUCTs or MAPs that differ
# from file to file (and fail on conflicting types), while the sample can miss rare keys such as
# errorCode or sessionIssuer entirely. Declaring only what we extract fixes the schema: keys not
# listed are skipped by the parser, missing ones come out NULL, and the two free-form objects are
# typed JSON so DuckDB keeps them as (minified) JSON text whatever their shape, with JSON null
# becoming SQL NULL. eventTime parses straight to TIMESTAMPTZ ("2024-03-11T10:00:00Z").
RECORD = """STRUCT(
    eventTime TIMESTAMPTZ, eventSource VARCHAR, eventName VARCHAR, awsRegion VARCHAR, recipientAccountId VARCHAR,
    userIdentity STRUCT(type VARCHAR, arn VARCHAR, principalId VARCHAR, accountId VARCHAR, accessKeyId VARCHAR,
                        sessionContext STRUCT(sessionIssuer STRUCT(arn VARCHAR), attributes STRUCT(mfaAuthenticated VARCHAR))),
    sourceIPAddress VARCHAR, userAgent VARCHAR, errorCode VARCHAR, errorMessage VARCHAR, requestID VARCHAR,
    eventID VARCHAR, readOnly BOOLEAN, eventType VARCHAR, requestParameters JSON, responseElements JSON)[]"""

# format='auto' accepts a file that is one object on one line (a delivery file) as well as pretty
# printed ones. maximum_object_size: a delivery file is a single JSON object, so the limit applies
# to the whole file; the default (16 MB) fails on the tens-of-MB files CloudTrail can deliver.
# 256 MB is an upper bound, not an allocation: buffers grow only to the size of the largest file.
# ignore_errors is left off: it would silently drop whole damaged files, which no benchmark
# should hide.
QUERY = """
COPY (
    SELECT r.eventTime AS time, r.eventSource AS event_source, r.eventName AS event_name, r.awsRegion AS region,
           r.recipientAccountId AS recipient_account_id, r.userIdentity.type AS actor_type, r.userIdentity.arn AS actor_arn,
           r.userIdentity.principalId AS actor_principal_id, r.userIdentity.accountId AS actor_account_id,
           r.userIdentity.accessKeyId AS access_key_id, r.userIdentity.sessionContext.sessionIssuer.arn AS session_issuer_arn,
           r.userIdentity.sessionContext.attributes.mfaAuthenticated = 'true' AS mfa_authenticated,
           r.sourceIPAddress AS source_ip, r.userAgent AS user_agent, r.errorCode AS error_code, r.errorMessage AS error_message,
           r.requestID AS request_id, r.eventID AS event_id, r.readOnly AS read_only, r.eventType AS event_type,
           r.requestParameters AS request_parameters, r.responseElements AS response_elements
    FROM (SELECT unnest(Records) AS r
          FROM read_json($files, columns = {'Records': $record}, format = 'auto', maximum_object_size = 268435456))
) TO $out (FORMAT parquet, COMPRESSION zstd)
"""


def literal(text):
    return "'" + text.replace("'", "''") + "'"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("input_dir")
    p.add_argument("output", help="Parquet file to write")
    args = p.parse_args()
    began = time.monotonic()
    con = duckdb.connect(config={"threads": args.threads})
    sql = (QUERY.replace("$files", literal(f"{args.input_dir}/**/*.json.gz"))
           .replace("$record", literal(RECORD)).replace("$out", literal(args.output)))
    events = con.execute(sql).fetchone()[0]
    seconds = time.monotonic() - began
    print(f"events={events} seconds={seconds:.2f} events_per_s={events / seconds:.0f}")


if __name__ == "__main__":
    main()
