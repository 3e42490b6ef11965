//! HTTP: live HLS from memory, the start page with its player, the streams API and metrics.
//!
//! Hot paths (playlists and segments) clone a `Bytes` under a read lock and use static header
//! values, so a request costs no copy of the media and no allocation for headers.

mod llhls;
mod page;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use crate::Origin;
use crate::metrics::RequestKind;
use crate::streams::Rendition;

const PLAYLIST_TYPE: HeaderValue = HeaderValue::from_static("application/vnd.apple.mpegurl");
const SEGMENT_TYPE: HeaderValue = HeaderValue::from_static("video/mp2t");
const SEGMENT_CACHE: HeaderValue = HeaderValue::from_static("max-age=900");
const ANY_ORIGIN: HeaderValue = HeaderValue::from_static("*");

pub fn router(origin: Arc<Origin>) -> Router {
    // The HLS handlers count their own requests (`http_requests_total`), so the hot paths pay
    // for no middleware; one layer counts everything else, unknown paths included.
    let hls = Router::new()
        .route("/hls/{file}", get(master_playlist))
        .route("/hls/{variant}/{file}", get(variant_file));
    let rest = Router::new()
        .route("/", get(page::index))
        .route("/static/hls.min.js", get(page::hls_js))
        .route("/player", get(page::player_redirect))
        .route("/player/", get(page::player))
        .route("/player/player.js", get(page::player_js))
        .route("/player/hls.min.js", get(page::hls_js))
        .route("/api/streams", get(list_streams))
        .route("/api/streams/{name}", get(one_stream).delete(drop_stream))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(|| async { not_found() })
        .layer(middleware::from_fn_with_state(origin.clone(), count_other));
    hls.merge(rest).with_state(origin)
}

async fn count_other(State(origin): State<Arc<Origin>>, request: Request, next: Next) -> Response {
    origin.metrics.http_requests.inc(RequestKind::Other);
    next.run(request).await
}

async fn master_playlist(State(origin): State<Arc<Origin>>, Path(file): Path<String>) -> Response {
    let Some(name) = file.strip_suffix(".m3u8") else {
        origin.metrics.http_requests.inc(RequestKind::Other);
        return not_found();
    };
    origin.metrics.http_requests.inc(RequestKind::Master);
    match origin.streams.get(name).and_then(|s| s.master_playlist()) {
        Some(body) => playlist_response(body, &origin),
        None => not_found(),
    }
}

async fn variant_file(
    State(origin): State<Arc<Origin>>,
    Path((variant, file)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    // Counted by the shape of the name, before it is resolved: a request for a segment that
    // is not (or no longer) there still reached the origin as a segment request.
    let kind = if file == "index.m3u8" {
        RequestKind::Playlist
    } else if file.starts_with('p') && file.ends_with(".m4s") {
        RequestKind::Part
    } else if file.ends_with(".ts") || file.ends_with(".m4s") || file.ends_with(".mp4") {
        RequestKind::Segment
    } else {
        RequestKind::Other
    };
    origin.metrics.http_requests.inc(kind);
    // `NAME_src` or `NAME_480`: stream names may hold '_', variant suffixes never do.
    let Some((name, suffix)) = variant.rsplit_once('_') else {
        return not_found();
    };
    let Some(rendition) = origin.streams.get(name).and_then(|s| s.rendition(suffix)) else {
        return not_found();
    };
    let rendition = match &*rendition {
        Rendition::Ll(ll) => return llhls::serve(&origin, ll, &file, query.as_deref()).await,
        Rendition::Ts(ts) => ts,
    };
    if file == "index.m3u8" {
        return match rendition.playlist() {
            Some(body) => playlist_response(body, &origin),
            None => not_found(),
        };
    }
    let Some(sequence) = file.strip_suffix(".ts").and_then(|n| n.parse::<u64>().ok()) else {
        return not_found();
    };
    match rendition.segment(sequence) {
        Some(body) => {
            let mut response = Response::new(Body::from(body));
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, SEGMENT_TYPE);
            headers.insert(header::CACHE_CONTROL, SEGMENT_CACHE);
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, ANY_ORIGIN);
            response
        }
        None => not_found(),
    }
}

/// Playlists may be cached for at most half the target duration, so a cache never hides a
/// whole new segment from players.
fn playlist_response(body: bytes::Bytes, origin: &Origin) -> Response {
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, PLAYLIST_TYPE);
    let half_target_secs = origin.config.hls.target_duration.as_millis() / 2000;
    headers.insert(
        header::CACHE_CONTROL,
        playlist_cache_control(half_target_secs as u64),
    );
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, ANY_ORIGIN);
    response
}

/// `max-age` in whole seconds, rounded down from half the configured target duration (the
/// target segments are cut at), so it never exceeds half of it.
fn playlist_cache_control(max_age_secs: u64) -> HeaderValue {
    match max_age_secs {
        0 => HeaderValue::from_static("no-cache"),
        1 => HeaderValue::from_static("max-age=1"),
        2 => HeaderValue::from_static("max-age=2"),
        3 => HeaderValue::from_static("max-age=3"),
        n => {
            HeaderValue::from_str(&format!("max-age={n}")).expect("digits are a valid header value")
        }
    }
}

fn not_found() -> Response {
    let mut response = (StatusCode::NOT_FOUND, "not found\n").into_response();
    response
        .headers_mut()
        .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, ANY_ORIGIN);
    response
}

#[derive(Debug, Serialize)]
pub struct StreamSummary {
    pub name: String,
    pub publishing: bool,
    pub video_codec: Option<String>,
    pub audio_codec: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub frame_rate: Option<f64>,
    /// Bits per second: measured on the recent segments, or the ingest rate before the first.
    pub bitrate: u64,
    pub uptime_secs: f64,
    pub playlist: String,
    /// The master playlist exists (the first segment is out): players can start.
    pub ready: bool,
    /// `ts` (MPEG-TS segments) or `ll-hls` (low-latency HLS with CMAF parts).
    pub hls: &'static str,
    /// The variants the master playlist lists: `NAME_src`, then the live ladder's rungs.
    pub variants: Vec<String>,
}

fn summary(stream: &crate::streams::LiveStream) -> StreamSummary {
    let info = stream.info();
    StreamSummary {
        name: stream.name.clone(),
        publishing: stream.is_publishing(),
        video_codec: info.video_codec,
        audio_codec: info.audio_codec,
        width: info.width,
        height: info.height,
        frame_rate: info.frame_rate,
        bitrate: stream.bitrate(),
        uptime_secs: (stream.uptime().as_secs_f64() * 10.0).round() / 10.0,
        playlist: format!("/hls/{}.m3u8", stream.name),
        ready: stream.master_playlist().is_some(),
        hls: stream.packaging.label(),
        variants: stream.listed_variants(),
    }
}

async fn list_streams(State(origin): State<Arc<Origin>>) -> Response {
    let all: Vec<StreamSummary> = origin.streams.list().iter().map(|s| summary(s)).collect();
    let mut response = axum::Json(all).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn one_stream(State(origin): State<Arc<Origin>>, Path(name): Path<String>) -> Response {
    match origin.streams.get(&name) {
        Some(stream) => axum::Json(summary(&stream)).into_response(),
        None => not_found(),
    }
}

/// Disconnects a stream's publisher. Needs `Authorization: Bearer <api_token>`; with no token
/// configured, control is off.
async fn drop_stream(
    State(origin): State<Arc<Origin>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(expected) = origin.config.api_token.as_deref().filter(|t| !t.is_empty()) else {
        return (
            StatusCode::FORBIDDEN,
            "control endpoints are disabled: set api_token\n",
        )
            .into_response();
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !given.is_some_and(|g| crate::auth::constant_time_eq(g, expected)) {
        return (
            StatusCode::UNAUTHORIZED,
            "a valid bearer token is required\n",
        )
            .into_response();
    }
    match origin.streams.get(&name) {
        Some(stream) if stream.is_publishing() => {
            tracing::info!(stream = %name, "Stream dropped by the operator.");
            stream.kick.cancel();
            StatusCode::NO_CONTENT.into_response()
        }
        _ => not_found(),
    }
}

async fn metrics(State(origin): State<Arc<Origin>>) -> Response {
    let mut response = origin.metrics.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}
