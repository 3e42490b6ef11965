#!/usr/bin/env bash
# Builds what infra/spherecast.yaml deploys and prints the commands that upload and deploy it:
#
#   dist/spherecast-release.tar.gz        bin/spherecast, install.sh, the systemd units, the
#                                         worker's exit hook, edge/nginx.conf, logrotate, a
#                                         default config
#   dist/spherecast-scaler-lambda.zip     bootstrap (the scaler Lambda for provided.al2023)
#
# Build on Debian 12 (the instances run Debian 12 with the same GStreamer 1.22). The Lambda
# binary must not need a glibc newer than Amazon Linux 2023's 2.34, nor any library beyond
# glibc's own: checked below.
#
#   infra/package.sh [RELEASE_BUCKET [PREFIX]]
set -euo pipefail
cd "$(dirname "$0")/.."

bucket=${1:-RELEASE_BUCKET}
prefix=${2:-spherecast}
dist=dist
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

echo "package: building spherecast and spherecast-scaler-lambda (release)"
cargo build --release --locked --bin spherecast
if ! cargo build --release --locked -p scaler --bin spherecast-scaler-lambda; then
  echo "package: the scaler crate has no spherecast-scaler-lambda binary to build" >&2
  exit 1
fi
lambda=target/release/spherecast-scaler-lambda

# Amazon Linux 2023 ships glibc 2.34: a symbol versioned later would fail at cold start.
newest=$(objdump -T "$lambda" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
if [ "$(printf '%s\n2.34\n' "$newest" | sort -V | tail -1)" != "2.34" ]; then
  echo "package: $lambda needs GLIBC_$newest, newer than provided.al2023's 2.34;" \
    "build it on an older glibc or for x86_64-unknown-linux-musl" >&2
  exit 1
fi
extra=$(objdump -p "$lambda" | awk '/NEEDED/ {print $2}' |
  grep -Ev '^(libc|libm|libgcc_s|libpthread|libdl|librt|ld-linux-x86-64)\.so' || true)
if [ -n "$extra" ]; then
  echo "package: $lambda links libraries the Lambda runtime lacks: $extra" >&2
  exit 1
fi

echo "package: assembling the release bundle"
mkdir -p "$stage/release/bin" "$stage/release/systemd" \
  "$stage/release/edge" "$stage/release/logrotate" "$stage/release/config"
install -m 0755 target/release/spherecast "$stage/release/bin/spherecast"
install -m 0755 infra/install.sh "$stage/release/install.sh"
install -m 0644 infra/systemd/spherecast-origin.service infra/systemd/spherecast-worker.service \
  infra/systemd/spherecast-edge.service "$stage/release/systemd/"
install -m 0755 infra/systemd/worker-exited "$stage/release/systemd/worker-exited"
install -m 0644 infra/edge/nginx.conf "$stage/release/edge/nginx.conf"
install -m 0644 infra/logrotate/spherecast "$stage/release/logrotate/spherecast"
install -m 0644 infra/config/spherecast.toml "$stage/release/config/spherecast.toml"

mkdir -p "$dist"
tar -czf "$dist/spherecast-release.tar.gz" --owner=0 --group=0 -C "$stage/release" .
install -m 0755 "$lambda" "$stage/bootstrap"
rm -f "$dist/spherecast-scaler-lambda.zip"
(cd "$stage" && python3 -c '
import sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
    info = zipfile.ZipInfo("bootstrap")
    info.external_attr = 0o100755 << 16  # executable: Lambda runs it as is
    info.compress_type = zipfile.ZIP_DEFLATED
    z.writestr(info, open("bootstrap", "rb").read())
' "$OLDPWD/$dist/spherecast-scaler-lambda.zip")

ls -l "$dist"
cat <<EOF

Upload, then deploy (PUBLISHER_CIDR: the only addresses allowed to publish RTMP):

  aws s3 cp $dist/spherecast-release.tar.gz s3://$bucket/$prefix/spherecast-release.tar.gz
  aws s3 cp $dist/spherecast-scaler-lambda.zip s3://$bucket/$prefix/spherecast-scaler-lambda.zip
  aws cloudformation deploy \\
    --template-file infra/spherecast.yaml \\
    --stack-name spherecast \\
    --capabilities CAPABILITY_IAM \\
    --parameter-overrides \\
      ReleaseBucket=$bucket \\
      ReleaseKey=$prefix/spherecast-release.tar.gz \\
      ScalerLambdaKey=$prefix/spherecast-scaler-lambda.zip \\
      PublisherCidr=PUBLISHER_CIDR \\
      WorkerFleetType=SpotFleet

Instances install the bundle once, at first boot. A new release goes under a new key (deploy
again with the new ReleaseKey: the edge group rolls, new workers take it), and the origin
upgrades in place (infra/README.md, "Upgrades"). A new Lambda zip needs:

  aws lambda update-function-code --function-name spherecast-scaler \\
    --s3-bucket $bucket --s3-key $prefix/spherecast-scaler-lambda.zip
EOF
