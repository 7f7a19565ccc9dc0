# Multi-stage build: compile in the Rust image, run from a small Debian image as a non-root user.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY schemas schemas
# The bundled AWS action catalog (include_str! in src/ciem/catalog.rs).
COPY catalog catalog
RUN cargo build --release --locked && strip target/release/auditlake

FROM debian:bookworm-slim
# librdkafka (Kafka source) links OpenSSL for SASL_SSL/SCRAM; CA certificates for TLS brokers and
# the cloud APIs (AWS SDK, Tencent API 3.0), which are HTTPS with the system's roots.
RUN apt-get update && apt-get install -y --no-install-recommends libssl3 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --home-dir /var/lib/auditlake auditlake \
    && mkdir -p /var/lib/auditlake && chown auditlake /var/lib/auditlake
COPY --from=build /src/target/release/auditlake /usr/local/bin/auditlake
COPY pipelines /etc/auditlake/pipelines
USER auditlake
WORKDIR /var/lib/auditlake
ENTRYPOINT ["auditlake"]
CMD ["run", "--config", "/etc/auditlake/pipelines/docker/local.toml"]
