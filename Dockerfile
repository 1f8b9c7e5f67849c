# syntax=docker/dockerfile:1
#
# One image with every binary of the system; docker-compose.yml picks the one a container runs
# with `command:` (command-api, query-api, projector, and the one-shot promo-topics). The tools
# (promo-token, replay-tools) are in it too, for `docker compose exec`.
#
#   docker build -t promo .                      # or: docker compose build
#   docker run --rm promo promo-token --help
#
# Checked without Docker by e2e/tests/deploy.rs: every binary compose runs is built and copied
# here, every COPY source exists, and the builder's Rust is the one rust-toolchain.toml pins.

# ---- builder ---------------------------------------------------------------------------------
# The exact release rust-toolchain.toml pins (1.95.0): a `1.95` tag could be a later patch
# release, and rustup would then download the pinned one on the first cargo call.
FROM rust:1.95.0-bookworm AS builder

# rdkafka builds librdkafka from source (its configure script and make, with a C compiler) and
# links zlib through pkg-config; cmake and libssl-dev are not needed by today's features but
# cost little here and keep a switch to rdkafka's `cmake-build` or `ssl` features working.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config zlib1g-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*

# rust-toolchain.toml also asks for rustfmt and clippy, which the image's minimal profile lacks:
# naming the (installed) toolchain here overrides the file, so no component is fetched for a
# release build that needs neither.
ENV RUSTUP_TOOLCHAIN=1.95.0 \
    CARGO_INCREMENTAL=0 \
    CARGO_TERM_COLOR=never

WORKDIR /src
# The whole workspace (.dockerignore leaves out target/, .stack/, .git/ and secrets): every
# member is needed, since cargo resolves the workspace as a whole.
COPY . .

# Cache mounts keep the crate downloads and the compiled dependencies between builds; the
# binaries are copied out of the cached target/ within the same step (a cache mount is not
# part of the image).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
      --bin command-api \
      --bin query-api \
      --bin projector \
      --bin replay-tools \
      --bin promo-token \
      --bin promo-topics \
 && mkdir -p /out \
 && cp target/release/command-api \
       target/release/query-api \
       target/release/projector \
       target/release/replay-tools \
       target/release/promo-token \
       target/release/promo-topics \
       /out/

# ---- runtime ---------------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime

# ca-certificates for TLS to outside services, zlib for librdkafka, curl for the healthchecks.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates zlib1g curl \
 && rm -rf /var/lib/apt/lists/*

# Never root: the services only bind ports above 1024 and write nothing to disk.
RUN groupadd --system --gid 10001 promo \
 && useradd --system --uid 10001 --gid promo --home-dir /app --shell /usr/sbin/nologin promo

COPY --from=builder /out/ /usr/local/bin/

# Each service reads config/<service>.toml relative to its working directory (or APP_CONFIG);
# compose overrides what differs in a container (addresses, the auth secret) with APP_ variables.
WORKDIR /app
COPY config/ /app/config/

USER promo:promo
EXPOSE 8080 8081 8082
# Overridden per service by compose; alone, the image runs the command API.
CMD ["command-api"]
