# Sourced by the benchmarks that run nginx + nginx-rtmp-module beside our origin
# (bench/origin.sh, bench/viewers.sh through bench/servers.sh, bench/latency.sh): one
# configuration, so every comparison is against the same nginx-rtmp. Needs bash; defines
# functions only. Knobs (defaults are what bench/origin.sh and bench/latency.sh measure with):
#   NGINX_WORKERS=1         nginx worker_processes
#   NGINX_CONNECTIONS=1024  nginx worker_connections (and twice that as worker_rlimit_nofile)
#   NGINX_HTTP_EXTRA=""     extra directives for nginx's http block

# Stops a process: SIGTERM, up to SECONDS (default 15) to exit, then SIGKILL; reaps it.
# Usage: stop_pid PID [SECONDS]
stop_pid() {
  local pid=$1 wait=${2:-15} i
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < wait * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# Ends a benchmark run, from the caller's EXIT trap once it has stopped its own helpers: stops
# the servers in the PID array (15 s each), keeps the run folder RUN with BENCH_KEEP=1 or
# removes it, and exits with RC. Usage: finish_run RC
finish_run() {
  local rc=$1 pid
  for pid in "${PID[@]}"; do stop_pid "$pid" 15; done
  if [ "${BENCH_KEEP:-0}" = 1 ]; then
    echo "bench: run folder kept: $RUN"
  else
    rm -rf "$RUN"
  fi
  exit "$rc"
}

# Prints the path of ngx_rtmp_module.so (Debian's libnginx-mod-rtmp), or fails.
nginx_rtmp_module() {
  local module=/usr/lib/nginx/modules/ngx_rtmp_module.so
  [ -f "$module" ] || module=$(dpkg -L libnginx-mod-rtmp 2>/dev/null | grep 'ngx_rtmp_module\.so$' | head -1 || true)
  [ -n "$module" ] && [ -f "$module" ] || return 1
  echo "$module"
}

# Starts nginx with nginx-rtmp in the folder DIR (config, logs, HLS in DIR/hls, recordings in
# DIR/rec): RTMP on 127.0.0.1:RTMP_PORT, application `live` with HLS on (2 s fragments, 12 s
# playlist) and `record all`, HTTP on 127.0.0.1:HTTP_PORT serving /hls with no-cache and CORS.
# Sets NGINX_RTMP_PID (a child of the calling shell) and NGINX_RTMP_LOG.
# Usage: start_nginx_rtmp DIR RTMP_PORT HTTP_PORT
start_nginx_rtmp() {
  local dir=$1 rtmp=$2 http=$3 user="" module
  module=$(nginx_rtmp_module) || { echo "ngx_rtmp_module.so not found: run scripts/setup.sh (libnginx-mod-rtmp)" >&2; return 1; }
  mkdir -p "$dir/hls" "$dir/rec" "$dir/tmp" "$dir/logs"
  # As root, nginx's workers would run as nobody and could not write into the run folder.
  [ "$(id -u)" -eq 0 ] && user="user root;"
  cat >"$dir/nginx.conf" <<CONF
load_module $module;
$user
worker_processes ${NGINX_WORKERS:-1};
worker_rlimit_nofile $(( ${NGINX_CONNECTIONS:-1024} * 2 ));
daemon off;
master_process on;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;

events {
    worker_connections ${NGINX_CONNECTIONS:-1024};
}

rtmp {
    server {
        listen 127.0.0.1:$rtmp;
        chunk_size 4000;
        application live {
            live on;
            hls on;
            hls_path $dir/hls;
            hls_fragment 2s;
            hls_playlist_length 12s;
            record all;
            record_path $dir/rec;
            record_unique on;
        }
    }
}

http {
    access_log off;
    ${NGINX_HTTP_EXTRA:-}
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    server {
        listen 127.0.0.1:$http;
        location /hls {
            types {
                application/vnd.apple.mpegurl m3u8;
                video/mp2t ts;
            }
            root $dir;
            add_header Cache-Control no-cache;
            add_header Access-Control-Allow-Origin *;
        }
    }
}
CONF
  NGINX_RTMP_LOG=$dir/logs/error.log
  nginx -t -q -p "$dir/" -c "$dir/nginx.conf" -e "$NGINX_RTMP_LOG" \
    || { tail -20 "$NGINX_RTMP_LOG" >&2 2>/dev/null; return 1; }
  nginx -p "$dir/" -c "$dir/nginx.conf" -e "$NGINX_RTMP_LOG" >"$dir/logs/stdout.log" 2>&1 &
  NGINX_RTMP_PID=$!
}
