//! LL-HLS over HTTP: the media playlist with blocking reload (RFC 8216bis 6.2.5.2), init
//! segments, segments, parts, and blocking requests for the part the preload hint names.
//!
//! A blocked request waits on the rendition's watch channel (no polling), holds one permit of
//! `max_blocked_requests`, and gives up after three target durations with 503. When the
//! stream ends every waiter wakes: a playlist request gets the final playlist (with
//! `#EXT-X-ENDLIST`), a part request that can no longer be met gets 404. A client that
//! disconnects drops its request future, and with it the permit and the waiter.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use media::llhls::{Position, Resource};

use super::{ANY_ORIGIN, PLAYLIST_TYPE, SEGMENT_CACHE, not_found};
use crate::Origin;
use crate::streams::LlRendition;

const MP4_TYPE: HeaderValue = HeaderValue::from_static("video/mp4");
/// A playlist asked for without `_HLS_msn` changes with every part: never cache it.
const LIVE_PLAYLIST_CACHE: HeaderValue = HeaderValue::from_static("no-cache");

/// What `_HLS_msn` and `_HLS_part` ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Awaited {
    msn: u64,
    part: Option<u32>,
}

/// Serves `file` of an LL-HLS rendition.
pub(super) async fn serve(
    origin: &Origin,
    rendition: &LlRendition,
    file: &str,
    query: Option<&str>,
) -> Response {
    match Resource::parse(file) {
        Some(Resource::Playlist) => playlist(origin, rendition, query).await,
        Some(Resource::Init(id)) => media_response(rendition.init(id)),
        Some(Resource::Segment(msn)) => media_response(rendition.segment(msn)),
        Some(Resource::Part(number)) => part(origin, rendition, number).await,
        None => not_found(),
    }
}

async fn playlist(origin: &Origin, rendition: &LlRendition, query: Option<&str>) -> Response {
    let awaited = match awaited(query) {
        Ok(Some(awaited)) => awaited,
        Ok(None) => {
            return match rendition.playlist() {
                Some(body) => playlist_response(body, LIVE_PLAYLIST_CACHE),
                None => not_found(),
            };
        }
        Err(reason) => return error(StatusCode::BAD_REQUEST, reason),
    };
    let position = rendition.position();
    let Some(last_msn) = position.last_msn() else {
        return not_found();
    };
    if awaited.msn > last_msn.saturating_add(2) {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "_HLS_msn={} is more than two segments after the last one in the playlist ({last_msn})",
                awaited.msn
            ),
        );
    }
    if let Some(part) = awaited.part {
        // No segment holds more parts than the forced cut allows; within the growing segment,
        // no more than the Advance Part Limit past its last part.
        let too_far = match position.last_part {
            Some((msn, last_part)) if awaited.msn == msn => {
                part > last_part.saturating_add(advance_part_limit(rendition))
            }
            _ => part >= max_parts(rendition, origin.config.hls.max_fragment),
        };
        if too_far {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "_HLS_part={part} of segment {} is too far ahead of the playlist",
                    awaited.msn
                ),
            );
        }
    }
    let ready = |p: &Position| p.ended || p.satisfies(awaited.msn, awaited.part);
    if !ready(&position)
        && let Err(response) = wait(origin, rendition, ready).await
    {
        return response;
    }
    match rendition.playlist() {
        Some(body) => {
            // The answer to one (msn, part) never becomes wrong: a later playlist also holds
            // that part. Caches may keep it by its URL, query included.
            let seconds = 6 * rendition.target_duration().as_secs();
            let cache = HeaderValue::from_str(&format!("max-age={seconds}"))
                .expect("digits are a valid header value");
            playlist_response(body, cache)
        }
        None => not_found(),
    }
}

/// A part that exists now, or the one the preload hint names once it is complete.
async fn part(origin: &Origin, rendition: &LlRendition, number: u64) -> Response {
    if let Some(body) = rendition.part(number) {
        return media_response(Some(body));
    }
    let position = rendition.position();
    // Only the hinted part is worth waiting for; anything later is not announced yet.
    if position.ended || position.last_part.is_none() || number != position.next_part {
        return not_found();
    }
    if let Err(response) = wait(origin, rendition, |p| p.ended || p.next_part > number).await {
        return response;
    }
    media_response(rendition.part(number))
}

/// Waits until `ready` holds for the rendition's position, at most three target durations
/// (RFC 8216bis 6.2.5.2), under the blocked-request limit. `Err` is the response to send.
async fn wait(
    origin: &Origin,
    rendition: &LlRendition,
    ready: impl FnMut(&Position) -> bool,
) -> Result<(), Response> {
    let Ok(_permit) = origin.blocked.clone().try_acquire_owned() else {
        origin.metrics.blocked_requests_failed.inc();
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many blocked playlist requests; retry shortly".into(),
        ));
    };
    let _waiting = Waiting::new(&origin.metrics.blocked_requests);
    let limit = 3 * rendition.target_duration();
    let mut position = rendition.subscribe();
    match tokio::time::timeout(limit, position.wait_for(ready)).await {
        // A closed channel means the rendition is gone: answer with what there is.
        Ok(_) => Ok(()),
        Err(_) => {
            origin.metrics.blocked_requests_failed.inc();
            Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not available within three target durations ({limit:?})"),
            ))
        }
    }
}

/// Counts a waiting request for as long as it waits, however its future ends (answered,
/// timed out, or dropped because the client went away).
struct Waiting(prometheus_client::metrics::gauge::Gauge);

impl Waiting {
    fn new(gauge: &prometheus_client::metrics::gauge::Gauge) -> Self {
        gauge.inc();
        Waiting(gauge.clone())
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// RFC 8216bis 6.2.5.2: three divided by the part target when it is under a second, else 3.
fn advance_part_limit(rendition: &LlRendition) -> u32 {
    let part_target = rendition.part_target();
    if part_target < Duration::from_secs(1) && !part_target.is_zero() {
        (3.0 / part_target.as_secs_f64()).ceil() as u32
    } else {
        3
    }
}

/// The most parts one segment can have: the forced cut over the part target, plus one for a
/// short last part.
fn max_parts(rendition: &LlRendition, max_segment: Duration) -> u32 {
    let part_target = rendition.part_target().as_secs_f64().max(0.001);
    (max_segment.as_secs_f64() / part_target).ceil() as u32 + 1
}

/// `_HLS_msn` and `_HLS_part` from the query; other parameters (`_HLS_skip`) are ignored.
fn awaited(query: Option<&str>) -> Result<Option<Awaited>, String> {
    let mut msn = None;
    let mut part = None;
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*key {
            "_HLS_msn" => {
                msn =
                    Some(value.parse::<u64>().map_err(|_| {
                        format!("_HLS_msn={value:?} is not a media sequence number")
                    })?)
            }
            "_HLS_part" => {
                part = Some(
                    value
                        .parse::<u32>()
                        .map_err(|_| format!("_HLS_part={value:?} is not a part index"))?,
                )
            }
            _ => {}
        }
    }
    match (msn, part) {
        (None, Some(_)) => Err("_HLS_part needs _HLS_msn".into()),
        (None, None) => Ok(None),
        (Some(msn), part) => Ok(Some(Awaited { msn, part })),
    }
}

fn playlist_response(body: bytes::Bytes, cache: HeaderValue) -> Response {
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, PLAYLIST_TYPE);
    headers.insert(header::CACHE_CONTROL, cache);
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, ANY_ORIGIN);
    response
}

/// Init segments, segments and parts never change once made: cached long, like TS segments.
fn media_response(body: Option<bytes::Bytes>) -> Response {
    let Some(body) = body else {
        return not_found();
    };
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, MP4_TYPE);
    headers.insert(header::CACHE_CONTROL, SEGMENT_CACHE);
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, ANY_ORIGIN);
    response
}

fn error(status: StatusCode, reason: String) -> Response {
    let mut response = (status, format!("{reason}\n")).into_response();
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, ANY_ORIGIN);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocking_parameters_parse_and_bad_ones_are_named() {
        assert_eq!(awaited(None), Ok(None));
        assert_eq!(awaited(Some("_HLS_skip=YES")), Ok(None));
        assert_eq!(
            awaited(Some("_HLS_msn=12&_HLS_part=3")),
            Ok(Some(Awaited {
                msn: 12,
                part: Some(3)
            }))
        );
        assert_eq!(
            awaited(Some("_HLS_msn=12")),
            Ok(Some(Awaited {
                msn: 12,
                part: None
            }))
        );
        assert!(
            awaited(Some("_HLS_part=3"))
                .unwrap_err()
                .contains("needs _HLS_msn")
        );
        assert!(
            awaited(Some("_HLS_msn=-1"))
                .unwrap_err()
                .contains("_HLS_msn")
        );
        assert!(
            awaited(Some("_HLS_msn=1&_HLS_part=x"))
                .unwrap_err()
                .contains("_HLS_part")
        );
    }
}
