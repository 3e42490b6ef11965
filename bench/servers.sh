# Shared by bench/origin.sh and bench/viewers.sh (sourced, not run): stopping processes,
# running bench.py helpers, and starting nginx + nginx-rtmp and spherecast side by side on free
# loopback ports. The caller sets ROOT, RUN, PY, RTMP_MODULE, BIN and the PID, RTMP, HTTP, LOG
# and LABEL arrays. Knobs (defaults are what bench/origin.sh measures with):
#   NGINX_WORKERS=1         nginx worker_processes
#   NGINX_CONNECTIONS=1024  nginx worker_connections (and twice that as worker_rlimit_nofile)
#   NGINX_HTTP_EXTRA=""     extra directives for nginx's http block
#   OURS_COMMAND=up         the spherecast subcommand (`origin` runs no VOD worker)

stop_pid() { # pid, seconds to wait after SIGTERM
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

# Runs a helper in the background and waits for it, so that a signal reaches the trap at once
# and the trap can stop the helper (which stops its own ffmpeg and wrk processes).
helper() {
  "${PY[@]}" "$@" &
  HELPER_PID=$!
  local rc=0
  wait "$HELPER_PID" || rc=$?
  HELPER_PID=""
  return "$rc"
}

start_nginx() {
  local dir=$RUN/nginx user=""
  mkdir -p "$dir/hls" "$dir/rec" "$dir/tmp" "$dir/logs"
  # As root, nginx's workers would run as nobody and could not write into the run folder.
  [ "$(id -u)" -eq 0 ] && user="user root;"
  cat >"$dir/nginx.conf" <<EOF
load_module $RTMP_MODULE;
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
        listen 127.0.0.1:${RTMP[nginx]};
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
        listen 127.0.0.1:${HTTP[nginx]};
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
EOF
  nginx -t -q -p "$dir/" -c "$dir/nginx.conf" -e "$dir/logs/error.log" \
    || { tail -20 "$dir/logs/error.log" >&2 2>/dev/null; return 1; }
  nginx -p "$dir/" -c "$dir/nginx.conf" -e "$dir/logs/error.log" >"$dir/logs/stdout.log" 2>&1 &
  PID[nginx]=$!
  LOG[nginx]=$dir/logs/error.log
}

start_ours() {
  local dir=$RUN/ours
  mkdir -p "$dir"
  # A copy, so that a rebuild by someone else during the run cannot swap the binary.
  cp "$BIN" "$dir/spherecast"
  "$dir/spherecast" "${OURS_COMMAND:-up}" --data "$dir/data" --rtmp "127.0.0.1:${RTMP[ours]}" --http "127.0.0.1:${HTTP[ours]}" \
    >"$dir/server.log" 2>&1 &
  PID[ours]=$!
  LOG[ours]=$dir/server.log
}

start_server() { # nginx|ours
  local kind=$1 health=""
  RTMP[$kind]=$("${PY[@]}" freeport)
  HTTP[$kind]=$("${PY[@]}" freeport)
  echo "== ${LABEL[$kind]}: rtmp 127.0.0.1:${RTMP[$kind]}, http 127.0.0.1:${HTTP[$kind]}"
  if [ "$kind" = nginx ]; then
    start_nginx || { echo "bench: nginx configuration rejected" >&2; return 1; }
  else
    start_ours
    health=/healthz
  fi
  if ! helper wait-ready --pid "${PID[$kind]}" --rtmp "${RTMP[$kind]}" --http "${HTTP[$kind]}" ${health:+--health "$health"}; then
    echo "bench: ${LABEL[$kind]} failed to start; its log:" >&2
    tail -30 "${LOG[$kind]}" >&2 || true
    stop_pid "${PID[$kind]}"
    unset 'PID[$kind]'
    return 1
  fi
}
