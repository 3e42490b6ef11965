# Shared by bench/origin.sh and bench/viewers.sh (sourced, not run): running bench.py helpers,
# and starting nginx + nginx-rtmp (bench/lib/nginx_rtmp.sh, whose knobs apply) and spherecast
# side by side on free loopback ports. The caller sets ROOT, RUN, PY, BIN and the PID, RTMP,
# HTTP, LOG and LABEL arrays. Knob:
#   OURS_COMMAND=up         the spherecast subcommand (`origin` runs no VOD worker)

# shellcheck source=bench/lib/nginx_rtmp.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/nginx_rtmp.sh"


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
  start_nginx_rtmp "$RUN/nginx" "${RTMP[nginx]}" "${HTTP[nginx]}" || return 1
  PID[nginx]=$NGINX_RTMP_PID
  LOG[nginx]=$NGINX_RTMP_LOG
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
