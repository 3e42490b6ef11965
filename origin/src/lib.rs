//! The live origin: RTMP ingest, live HLS packaging and serving, recording every session, and
//! uploading each finished recording to the ingress bucket.
#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
pub mod http;
pub mod ladder;
pub mod metrics;
pub mod packer;
pub mod publication;
pub mod record;
pub mod rtmp;
pub mod streams;
pub mod upload;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use config::OriginConfig;

use crate::auth::Authorizer;
use crate::metrics::Metrics;
use crate::streams::Streams;
use crate::upload::{Spool, Uploader};

/// Where finished recordings go: the ingress bucket, and in local mode the queue that gets
/// the S3 event (in AWS mode S3 raises the event itself).
#[derive(Debug, Clone)]
pub struct Ingress {
    pub store: Arc<dyn cloud::ObjectStore>,
    pub queue: Option<Arc<dyn cloud::Queue>>,
}

/// State shared by every connection and request.
#[derive(Debug)]
pub struct Origin {
    pub config: OriginConfig,
    pub streams: Streams,
    pub metrics: Metrics,
    pub authorizer: Authorizer,
    pub spool: Spool,
    pub recording_dir: PathBuf,
    /// Work that must finish before the process exits (moving recordings into the spool).
    pub tasks: tokio_util::task::TaskTracker,
    /// Permits for LL-HLS requests that wait for media (`max_blocked_requests`).
    pub blocked: Arc<tokio::sync::Semaphore>,
}

/// Refuses an open publish point on a reachable address: only the operator may publish.
pub fn check_publish_exposure(config: &OriginConfig) -> anyhow::Result<()> {
    if !config.rtmp_listen.ip().is_loopback()
        && !config.publish.is_configured()
        && !config.allow_open_publish
    {
        anyhow::bail!(
            "refusing to listen for RTMP on {} with no publish authorisation: configure [origin.publish] keys, \
             stream_keys or on_publish, or pass --allow-open-publish if this network is trusted",
            config.rtmp_listen
        );
    }
    Ok(())
}

/// Binds both listeners, resumes pending work, and serves until `shutdown`.
pub async fn run(
    config: OriginConfig,
    ingress: Ingress,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    check_publish_exposure(&config)?;
    config.validate()?;
    let recording_dir = config.data_dir.join("recordings");
    let spool_dir = config.data_dir.join("spool");
    std::fs::create_dir_all(&recording_dir).with_context(|| {
        format!(
            "cannot create the recording folder {}",
            recording_dir.display()
        )
    })?;
    let metrics = Metrics::default();
    let spool = Spool::open(&spool_dir)
        .with_context(|| format!("cannot open the upload spool {}", spool_dir.display()))?;

    // Recordings left behind by a crash are repaired and queued for upload before anything new.
    for recovered in record::recover(&recording_dir) {
        warn!(file = %recovered.path.display(), "Recovered a recording left by an earlier run.");
        if let Err(error) = spool.submit(&recovered) {
            warn!(%error, file = %recovered.path.display(), "Recovered recording stays in the recording folder.");
        }
    }

    let rtmp_listener = TcpListener::bind(config.rtmp_listen)
        .await
        .with_context(|| format!("cannot listen for RTMP on {}", config.rtmp_listen))?;
    let http_listener = TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("cannot listen for HTTP on {}", config.http_listen))?;
    let (rtmp_addr, http_addr) = (rtmp_listener.local_addr()?, http_listener.local_addr()?);

    let origin = Arc::new(Origin {
        streams: Streams::new(
            config.hls.window,
            config.hls.target_duration,
            metrics.clone(),
        ),
        authorizer: Authorizer::new(config.publish.clone()),
        metrics: metrics.clone(),
        spool: spool.clone(),
        recording_dir,
        tasks: tokio_util::task::TaskTracker::new(),
        blocked: Arc::new(tokio::sync::Semaphore::new(
            config.hls.max_blocked_requests.max(1),
        )),
        config,
    });

    let uploader = Uploader {
        spool,
        store: ingress.store,
        queue: ingress.queue,
        prefix: origin.config.upload.prefix.clone(),
        min_backoff: origin.config.upload.min_backoff,
        max_backoff: origin.config.upload.max_backoff,
        metrics,
    };
    let uploads_stop = CancellationToken::new();
    let uploads = tokio::spawn(uploader.run(uploads_stop.clone()));

    let reaper = tokio::spawn(reap(origin.clone(), shutdown.clone()));
    let http_stop = shutdown.clone();
    let router = http::router(origin.clone());
    // Nagle's algorithm would hold the tail of a response (the last part of a segment, a
    // whole small playlist) until the viewer acknowledges the previous one, which a busy
    // viewer delays by up to 40 ms: with thousands of viewers that became seconds of segment
    // latency. Responses are written whole, so there is nothing for Nagle to coalesce.
    let http_listener = http_listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "Could not set TCP_NODELAY on an HTTP connection.");
        }
    });
    let http = tokio::spawn(async move {
        axum::serve(http_listener, router)
            .with_graceful_shutdown(async move { http_stop.cancelled().await })
            .await
    });
    info!(rtmp = %rtmp_addr, http = %http_addr, "Origin listening.");
    rtmp::run(rtmp_listener, origin.clone(), shutdown.clone()).await;
    // Every connection has finalised its recording; wait until each is in the spool.
    origin.tasks.close();
    origin.tasks.wait().await;
    // Give the uploader a bounded time to empty the spool; what is left is uploaded at the
    // next start.
    let grace = origin.config.upload.shutdown_grace;
    let drained = tokio::time::timeout(grace, async {
        while !origin.spool.pending().is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    if drained.is_err() {
        let left = origin.spool.pending().len();
        warn!(
            left,
            ?grace,
            "Uploads left in the spool for the next start."
        );
    }
    uploads_stop.cancel();
    let _ = uploads.await;
    let _ = reaper.await;
    // A client that stops reading must not hold the exit forever.
    match tokio::time::timeout(Duration::from_secs(5), http).await {
        Ok(joined) => joined.context("HTTP server task")?.context("HTTP server")?,
        Err(_) => warn!("HTTP connections still open after 5 s; closing them."),
    }
    info!("Origin stopped.");
    Ok(())
}

/// Drops ended streams once their linger time is over.
async fn reap(origin: Arc<Origin>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => { origin.streams.reap(origin.config.hls.linger); }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_publish_point_is_refused_only_off_loopback() {
        let mut config = OriginConfig {
            rtmp_listen: "0.0.0.0:1935".parse().unwrap(),
            ..Default::default()
        };
        assert!(check_publish_exposure(&config).is_err());
        config.allow_open_publish = true;
        assert!(check_publish_exposure(&config).is_ok());
        config.allow_open_publish = false;
        config.publish.keys = vec!["k".into()];
        assert!(check_publish_exposure(&config).is_ok());
        let loopback = OriginConfig::default();
        assert!(check_publish_exposure(&loopback).is_ok());
    }
}
