# syntax=docker/dockerfile:1
#
# The exposure service: `docker build -t exposure .`, or `docker compose up`
# (docker-compose.yml). Two stages: a Rust toolchain builds the binary
# (librdkafka is compiled in by rdkafka-sys), a slim Debian runs it as an
# unprivileged user.

FROM rust:1-bookworm AS build
WORKDIR /src
# Only what the build reads (.dockerignore keeps target/, data/ and .git out).
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY examples ./examples
# The caches keep crates and incremental output between builds (BuildKit).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin exposure \
    && cp target/release/exposure /usr/local/bin/exposure

FROM debian:bookworm-slim
# curl: the health check. zlib (librdkafka's compression) is in the base image.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin exposure \
    && mkdir -p /app/data \
    && chown exposure:exposure /app/data
COPY --from=build /usr/local/bin/exposure /usr/local/bin/exposure
# Defaults; docker-compose.yml mounts the project's config/ over them.
COPY config/exposure.toml config/services.toml /app/config/
WORKDIR /app
USER exposure
# state.dir = "data" (relative to /app): mount a volume here to keep checkpoints.
VOLUME ["/app/data"]
# In a container the API must listen on every interface; publish the port
# only where it should be reachable (docker-compose.yml: the host's loopback).
ENV EXPOSURE__API__LISTEN=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["exposure"]
CMD ["run", "--config", "/app/config/exposure.toml"]
