//! Command-line interface: subcommands, flags (each with an environment variable), logging,
//! and wiring the services together.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::settings::Settings;

#[derive(Debug, Parser)]
#[command(
    name = "spherecast",
    version,
    about = "Live RTMP origin and VOD transcoding for flat and 360 video"
)]
pub struct Cli {
    /// Log format.
    #[arg(
        long,
        global = true,
        env = "SPHERECAST_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Everything on one machine: origin with local folders as buckets and an embedded queue.
    Up(UpArgs),
    /// The live origin alone (RTMP ingest, live HLS, recording, upload).
    Origin(OriginArgs),
}

/// Flags shared by every service that runs the origin.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// TOML configuration file (optional; flags override it).
    #[arg(long, env = "SPHERECAST_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data folder: recordings, upload spool, local buckets, embedded queue.
    #[arg(long, env = "SPHERECAST_DATA")]
    pub data: Option<PathBuf>,
    /// RTMP listen address.
    #[arg(long, env = "SPHERECAST_RTMP")]
    pub rtmp: Option<SocketAddr>,
    /// HTTP listen address (HLS, player page, API, metrics).
    #[arg(long, env = "SPHERECAST_HTTP")]
    pub http: Option<SocketAddr>,
    /// Accept publishes from anyone on a non-loopback RTMP address (no keys, no callback).
    #[arg(long, env = "SPHERECAST_ALLOW_OPEN_PUBLISH")]
    pub allow_open_publish: bool,
    /// Bearer token for control endpoints.
    #[arg(long, env = "SPHERECAST_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct OriginArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Ingress S3 bucket (overrides [ingress] bucket).
    #[arg(long, env = "SPHERECAST_INGRESS_BUCKET")]
    pub ingress_bucket: Option<String>,
}

pub fn init_logging(format: &LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: journald and log files get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Applies flags over the file, with the `up` defaults (./data) where neither says anything.
fn resolve(common: &CommonArgs) -> anyhow::Result<Settings> {
    let mut settings = Settings::load(common.config.as_deref())?;
    let origin = &mut settings.origin;
    if let Some(data) = &common.data {
        origin.data_dir = data.clone();
    }
    if let Some(rtmp) = common.rtmp {
        origin.rtmp_listen = rtmp;
    }
    if let Some(http) = common.http {
        origin.http_listen = http;
    }
    if common.allow_open_publish {
        origin.allow_open_publish = true;
    }
    if let Some(token) = &common.api_token {
        origin.api_token = Some(token.clone());
    }
    Ok(settings)
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone()));
    match cli.command {
        Command::Up(args) => {
            let settings = resolve(&args.common)?;
            up(settings, shutdown).await
        }
        Command::Origin(args) => {
            let mut settings = resolve(&args.common)?;
            if let Some(bucket) = args.ingress_bucket {
                settings.ingress.bucket = Some(bucket);
            }
            let ingress = ingress(&settings).await?;
            origin::run(settings.origin, ingress, shutdown).await
        }
    }
}

/// All services in one process, sharing the local buckets and the embedded queue.
async fn up(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let ingress = ingress(&settings).await?;
    info!(data = %settings.origin.data_dir.display(), "Starting spherecast up.");
    origin::run(settings.origin, ingress, shutdown).await
}

/// Builds the ingress ports from settings: S3 (+ S3's own events) or a local folder (+ the
/// embedded queue, which gets the same events the origin writes).
async fn ingress(settings: &Settings) -> anyhow::Result<origin::Ingress> {
    let data = &settings.origin.data_dir;
    let needs_aws = settings.ingress.bucket.is_some() || settings.queue.url.is_some();
    let aws = if needs_aws {
        Some(
            cloud::aws::sdk_config(
                settings.aws.endpoint_url.as_deref(),
                settings.aws.region.as_deref(),
            )
            .await,
        )
    } else {
        None
    };
    let store: Arc<dyn cloud::ObjectStore> = match (&settings.ingress.bucket, &aws) {
        (Some(bucket), Some(aws)) => Arc::new(cloud::S3Store::new(
            cloud::aws::s3_client(aws, false),
            bucket.clone(),
        )),
        _ => {
            let dir = settings
                .ingress
                .dir
                .clone()
                .unwrap_or_else(|| data.join("ingress"));
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create ingress folder {}", dir.display()))?;
            Arc::new(cloud::LocalStore::new(dir, "ingress".to_string()))
        }
    };
    let queue: Option<Arc<dyn cloud::Queue>> =
        match (&settings.ingress.bucket, &settings.queue.url, &aws) {
            // S3 raises the event itself.
            (Some(_), _, _) => None,
            (None, Some(url), Some(aws)) => Some(Arc::new(cloud::SqsQueue::new(
                cloud::aws::sqs_client(aws),
                url.clone(),
            ))),
            _ => {
                let dir = data.join("queue");
                let queue = cloud::EmbeddedQueue::open(&dir, settings.queue_settings())
                    .with_context(|| {
                        format!("cannot open the embedded queue in {}", dir.display())
                    })?;
                Some(Arc::new(queue))
            }
        };
    Ok(origin::Ingress { store, queue })
}

/// First SIGTERM or Ctrl-C starts a graceful shutdown; a second one exits at once.
async fn watch_signals(shutdown: CancellationToken) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler succeeds");
    for round in 0..2 {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        if round == 0 {
            info!(
                "Shutting down: finishing recordings and uploads in progress. Signal again to exit at once."
            );
            shutdown.cancel();
        } else {
            std::process::exit(130);
        }
    }
}
