# syntax=docker/dockerfile:1
# Build stage: compile the release binary with the dependency layer cached separately.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# Build the dependencies alone first, so source edits do not rebuild them.
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked --bin roomhost \
    && rm -rf src
COPY src ./src
COPY web ./web
# The store's migrations are compiled into the binary.
COPY migrations ./migrations
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin roomhost

# Runtime stage: a slim Debian with the binary, the shipped rooms and a non-root user.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin roomhost \
    && mkdir /data && chown roomhost /data
WORKDIR /app
COPY --from=build /src/target/release/roomhost /usr/local/bin/roomhost
COPY rooms ./rooms
USER roomhost
ENV ROOMHOST_ADDR=0.0.0.0:8000 \
    ROOMHOST_ROOMS_DIR=/app/rooms \
    OLLAMA_BASE_URL=http://ollama:11434 \
    ROOMHOST_DATABASE_URL=sqlite:///data/roomhost.db \
    RUST_LOG=info
# The SQLite store (threads, runs, events); the user above owns it. Mount a volume here to keep it.
VOLUME /data
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=5s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8000/healthz || exit 1
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/roomhost"]
