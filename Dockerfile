# The Sluice image: the sluice binary on a small Debian base, run as a non-root user.
#   docker build -t <registry>/sluice:<tag> .
# Defaults to the Kubernetes controller; `docker run IMAGE serve --manifests /etc/sluice` (with a
# mounted directory) runs the standalone gateway instead.

FROM rust:1-bookworm AS build
# aws-lc-sys (rustls' crypto provider) falls back to CMake on some targets.
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# --locked: build exactly the committed Cargo.lock.
RUN cargo build --release --locked -p sluice

FROM debian:bookworm-slim
# ca-certificates: verifying HTTPS upstreams (backend-protocol HTTPS) against public CAs.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 sluice \
    && useradd --system --uid 10001 --gid sluice --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin sluice
COPY --from=build /src/target/release/sluice /usr/local/bin/sluice
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
# 80/443: traffic; 10254: admin API, health and metrics (bound to 127.0.0.1 unless
# --admin-listen says otherwise; the shipped manifests set 0.0.0.0:10254 for the probes).
EXPOSE 80 443 10254
ENTRYPOINT ["sluice"]
CMD ["serve", "--kubernetes"]
