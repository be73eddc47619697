#!/usr/bin/env bash
# Builds Sluice, starts two demo backends and serves examples/quickstart on
#   http://hello.localhost:8080  and  https://hello.localhost:8443  (admin API on 127.0.0.1:10254).
# Edit the files in examples/quickstart while it runs: changes apply live.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p sluice
bin=target/release/sluice
"$bin" demo-backend --listen 127.0.0.1:9001 --name hello &
"$bin" demo-backend --listen 127.0.0.1:9002 --name hello-v2 &
trap 'kill $(jobs -p) 2>/dev/null' EXIT
cat <<'MSG'

Sluice is starting. Try, in another terminal:
  curl http://hello.localhost:8080/            # -> backend "hello"
  curl http://hello.localhost:8080/v2/x        # -> backend "hello-v2"
  curl -k https://hello.localhost:8443/        # TLS (ECDSA or RSA certificate, whichever the client prefers)
  curl http://127.0.0.1:10254/api/v1/routes    # the effective route table
  curl http://127.0.0.1:10254/api/v1/problems  # anything rejected, with file:line and reason

MSG
exec "$bin" serve --manifests examples/quickstart \
  --http-listen 127.0.0.1:8080 --https-listen 127.0.0.1:8443 --admin-listen 127.0.0.1:10254 \
  --drain-delay 0s
