#!/bin/bash
# Installs one Spherecast role on a Debian 12 instance from the unpacked release bundle (this
# script's folder). Run as root by the user-data in infra/spherecast.yaml, after it installed
# the Debian packages and unpacked the bundle into /opt/spherecast:
#
#   install.sh origin LOG_GROUP REGION < spherecast.toml
#   install.sh worker LOG_GROUP REGION < spherecast.toml
#   PRIMARY_ORIGIN=host:port BACKUP_ORIGIN=host:port LISTEN_PORT=port [CACHE_DIR=dir] \
#     install.sh edge LOG_GROUP REGION
#
# origin and worker: the settings TOML on stdin becomes /etc/spherecast/spherecast.toml
# (root:spherecast 0640: it may hold the publish key), the binary goes to
# /usr/local/bin/spherecast and the unit is (re)started. edge: infra/edge/nginx.conf with its
# placeholders filled becomes /etc/spherecast/edge.conf, run by spherecast-edge.service with
# Debian's nginx binary. Every role gets the CloudWatch agent shipping its log files to
# LOG_GROUP. Run again, it upgrades: same settings, new binary and units, service restarted.
set -euo pipefail

usage() {
  echo "usage: $0 origin|worker|edge LOG_GROUP REGION" >&2
  exit 2
}
[ $# -eq 3 ] || usage
role=$1 log_group=$2 region=$3
bundle=$(cd "$(dirname "$0")" && pwd)
# Every ${NAME} infra/edge/nginx.conf leaves to boot time (tests/infra.rs checks the list).
# shellcheck disable=SC2016 # single quotes: envsubst gets the names, not the values
EDGE_PLACEHOLDERS='${LISTEN_PORT} ${PRIMARY_ORIGIN} ${BACKUP_ORIGIN} ${CACHE_DIR}'

install_cloudwatch_agent() {
  # $1: JSON list of {"file_path": ..., "log_stream_name": ...} without the group.
  local collect=$1
  if [ ! -x /opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl ]; then
    curl -fsSL -o /tmp/amazon-cloudwatch-agent.deb \
      "https://amazoncloudwatch-agent-${region}.s3.${region}.amazonaws.com/debian/amd64/latest/amazon-cloudwatch-agent.deb"
    apt-get install -y -q /tmp/amazon-cloudwatch-agent.deb
  fi
  local config=/opt/aws/amazon-cloudwatch-agent/etc/spherecast.json
  cat >"$config" <<EOF
{
  "agent": { "region": "${region}", "run_as_user": "root" },
  "logs": {
    "logs_collected": {
      "files": {
        "collect_list": ${collect//@GROUP@/${log_group}}
      }
    }
  }
}
EOF
  /opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl \
    -a fetch-config -m ec2 -s -c "file:${config}"
}

create_service_user() {
  if ! id spherecast >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/spherecast --no-create-home \
      --shell /usr/sbin/nologin spherecast
  fi
  install -m 0644 "$bundle/logrotate/spherecast" /etc/logrotate.d/spherecast
}

install_service_user() {
  create_service_user
  install -m 0755 "$bundle/bin/spherecast" /usr/local/bin/spherecast
  install -d -o root -g spherecast -m 0750 /etc/spherecast
  # The settings: stdin, readable by the service only.
  install -o root -g spherecast -m 0640 /dev/stdin /etc/spherecast/spherecast.toml
}

case "$role" in
  origin)
    install_service_user
    install -m 0644 "$bundle/systemd/spherecast-origin.service" /etc/systemd/system/
    systemctl daemon-reload
    systemctl enable spherecast-origin.service
    # restart, not start: the same script upgrades a running instance (infra/README.md).
    systemctl restart spherecast-origin.service
    install_cloudwatch_agent \
      '[{"file_path": "/var/log/spherecast/origin.log", "log_group_name": "@GROUP@", "log_stream_name": "{instance_id}"}]'
    ;;
  worker)
    install_service_user
    install -d -m 0755 /usr/local/lib/spherecast
    install -m 0755 "$bundle/systemd/worker-exited" /usr/local/lib/spherecast/worker-exited
    install -m 0644 "$bundle/systemd/spherecast-worker.service" /etc/systemd/system/
    systemctl daemon-reload
    systemctl enable spherecast-worker.service
    systemctl restart spherecast-worker.service
    install_cloudwatch_agent \
      '[{"file_path": "/var/log/spherecast/worker.log", "log_group_name": "@GROUP@", "log_stream_name": "{instance_id}"}]'
    ;;
  edge)
    : "${PRIMARY_ORIGIN:?PRIMARY_ORIGIN (host:port of the live origin) is required}"
    : "${BACKUP_ORIGIN:?BACKUP_ORIGIN (host:port) is required}"
    : "${LISTEN_PORT:?LISTEN_PORT is required}"
    CACHE_DIR=${CACHE_DIR:-/dev/shm/spherecast-edge}
    export PRIMARY_ORIGIN BACKUP_ORIGIN LISTEN_PORT CACHE_DIR
    create_service_user
    # Debian starts its own nginx.service (port 80, /etc/nginx) on install: ours replaces it.
    systemctl disable --now nginx.service
    install -d -o root -g spherecast -m 0750 /etc/spherecast
    # Only our placeholders: nginx's own $variables stay as they are.
    envsubst "$EDGE_PLACEHOLDERS" <"$bundle/edge/nginx.conf" >/etc/spherecast/edge.conf
    chgrp spherecast /etc/spherecast/edge.conf
    chmod 0640 /etc/spherecast/edge.conf
    install -m 0644 "$bundle/systemd/spherecast-edge.service" /etc/systemd/system/
    systemctl daemon-reload
    systemctl enable spherecast-edge.service
    systemctl restart spherecast-edge.service
    install_cloudwatch_agent \
      '[{"file_path": "/var/lib/spherecast-edge/logs/access.log", "log_group_name": "@GROUP@", "log_stream_name": "{instance_id}/access"},
        {"file_path": "/var/lib/spherecast-edge/logs/error.log", "log_group_name": "@GROUP@", "log_stream_name": "{instance_id}/error"}]'
    ;;
  *)
    usage
    ;;
esac
echo "install.sh: $role installed"
