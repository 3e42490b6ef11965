//! Command-line interface: subcommands, flags (each with an environment variable), logging,
//! and wiring the services together.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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
    /// The VOD worker alone: queue consumer, GStreamer ladder, upload to the egress bucket.
    Worker(WorkerArgs),
    /// Transcode one local file into an HLS ladder in a folder (what a worker job does, without
    /// queue or buckets).
    Transcode(TranscodeArgs),
    /// Size the worker fleet from the queue: a loop (every `[scaler] interval_secs`), or one
    /// run with `--once` (for cron).
    Scaler(ScalerArgs),
    /// Load-test a live HLS or LL-HLS URL with virtual viewers that behave like players;
    /// report latency, errors, throughput and stalls (stderr, JSON, HTML).
    Loadtest(LoadtestArgs),
}

/// Flags every long-running service takes.
#[derive(Debug, Args)]
pub struct FileArgs {
    /// TOML configuration file (optional; flags override it).
    #[arg(long, env = "SPHERECAST_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data folder: recordings, upload spool, local buckets, embedded queue, work folder.
    #[arg(long, env = "SPHERECAST_DATA")]
    pub data: Option<PathBuf>,
}

/// Flags shared by every service that runs the origin.
#[derive(Debug, Args)]
pub struct CommonArgs {
    #[command(flatten)]
    pub files: FileArgs,
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
    /// Worker status endpoint address (`/status`, `/metrics`, `/healthz`).
    #[arg(long, env = "SPHERECAST_WORKER_HTTP")]
    pub worker_http: Option<SocketAddr>,
}

#[derive(Debug, Args)]
pub struct OriginArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Ingress S3 bucket (overrides [ingress] bucket).
    #[arg(long, env = "SPHERECAST_INGRESS_BUCKET")]
    pub ingress_bucket: Option<String>,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub files: FileArgs,
    /// Worker status endpoint address (`/status`, `/metrics`, `/healthz`).
    #[arg(long, env = "SPHERECAST_WORKER_HTTP")]
    pub worker_http: Option<SocketAddr>,
    /// SQS queue URL (overrides [queue] url).
    #[arg(long, env = "SPHERECAST_QUEUE_URL")]
    pub queue_url: Option<String>,
    /// Ingress S3 bucket (overrides [ingress] bucket).
    #[arg(long, env = "SPHERECAST_INGRESS_BUCKET")]
    pub ingress_bucket: Option<String>,
    /// Egress S3 bucket (overrides [egress] bucket).
    #[arg(long, env = "SPHERECAST_EGRESS_BUCKET")]
    pub egress_bucket: Option<String>,
}

#[derive(Debug, Args)]
pub struct TranscodeArgs {
    /// TOML configuration file; its [worker] section sets the ladder.
    #[arg(long, env = "SPHERECAST_CONFIG")]
    pub config: Option<PathBuf>,
    /// The recording (FLV, MP4, anything GStreamer decodes).
    pub input: PathBuf,
    /// Output folder (created): master.m3u8 and one folder per rendition.
    pub output: PathBuf,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ScalerArgs {
    #[command(subcommand)]
    pub action: Option<ScalerAction>,
    #[command(flatten)]
    pub files: FileArgs,
    /// One run, then exit: 0 when it worked, 1 when the queue, the fleet or the stored state
    /// could not be read or changed (nothing is changed then).
    #[arg(long)]
    pub once: bool,
    /// Print the decision and its reason; change neither the fleet nor the stored state.
    #[arg(long)]
    pub dry_run: bool,
    /// SQS queue URL (overrides [queue] url).
    #[arg(long, env = "SPHERECAST_QUEUE_URL")]
    pub queue_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ScalerAction {
    /// Replay a trace of recordings against several policies (ours, the reference step rule,
    /// a fixed fleet) on a model of boot delay, transcode speed and spot interruptions; print
    /// waits, instance-hours and jobs killed, and write an SVG chart per policy.
    Simulate(SimulateArgs),
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// CSV, one recording per line: `arrival,duration[,name]` (seconds or HH:MM:SS).
    #[arg(long)]
    pub trace: PathBuf,
    /// TOML (or .json) with `[model]`, `[[candidate]]` and `fixed_fleet` to replace the
    /// defaults (see scaler/traces/knobs.toml).
    #[arg(long)]
    pub setup: Option<PathBuf>,
    /// Write `<trace>-<policy>.svg` charts into this folder.
    #[arg(long)]
    pub svg_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LoadtestArgs {
    /// Master playlist URL (a media playlist URL works too: viewers then skip the variant
    /// choice).
    #[arg(long, env = "SPHERECAST_LOADTEST_URL")]
    pub url: String,
    /// A named set of viewers, ramp and duration; `jmeter-lab` is the reference
    /// architecture's lab: 150 viewers, 15 s ramp, 180 s. Flags given as well win.
    #[arg(long)]
    pub preset: Option<loadtest::Preset>,
    /// Virtual viewers (at most 20000) [default: 10].
    #[arg(long)]
    pub viewers: Option<u32>,
    /// Seconds over which viewers join, evenly spaced [default: 0].
    #[arg(long)]
    pub ramp: Option<f64>,
    /// Seconds at full load after the ramp; the run ends by ramp + duration (at most 3600 s
    /// together) plus a 3 s grace [default: 60].
    #[arg(long)]
    pub duration: Option<f64>,
    /// Variant choice from the master: `first`, `highest`, `lowest`, or a bandwidth in
    /// bits/s (the highest variant at or below it, else the lowest).
    #[arg(long, default_value = "highest")]
    pub variant: loadtest::VariantPolicy,
    /// Time limit of one request in seconds, body included (blocking playlist reloads get
    /// three target durations more).
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
    /// Seconds between progress lines on stderr (0: none).
    #[arg(long, default_value_t = 5.0)]
    pub progress: f64,
    /// Write the HTML report (self-contained, with charts) here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Write the JSON report (totals, per request kind, errors, time series, per viewer).
    #[arg(long)]
    pub json: Option<PathBuf>,
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
    let mut settings = load(&common.files)?;
    let origin = &mut settings.origin;
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

/// The config file with `--data` applied.
fn load(files: &FileArgs) -> anyhow::Result<Settings> {
    let mut settings = Settings::load(files.config.as_deref())?;
    if let Some(data) = &files.data {
        settings.origin.data_dir = data.clone();
    }
    Ok(settings)
}

/// A `--worker-http` flag, when given, wins over `[worker] http_listen`.
fn apply_worker_http(settings: &mut Settings, addr: Option<SocketAddr>) {
    if addr.is_some() {
        settings.worker.http_listen = addr;
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let on_signal = match cli.command {
        Command::Worker(_) => {
            "Shutting down: handing running jobs back to the queue. Signal again to exit at once."
        }
        Command::Transcode(_) => "Stopping the transcode.",
        Command::Scaler(_) => "Stopping the scaler.",
        Command::Loadtest(_) => "Stopping the load test and writing its report.",
        _ => {
            "Shutting down: finishing recordings and uploads in progress, handing running jobs \
             back to the queue. Signal again to exit at once."
        }
    };
    tokio::spawn(watch_signals(shutdown.clone(), on_signal));
    match cli.command {
        Command::Up(args) => {
            let mut settings = resolve(&args.common)?;
            apply_worker_http(&mut settings, args.worker_http);
            up(settings, shutdown).await
        }
        Command::Worker(args) => {
            let mut settings = load(&args.files)?;
            apply_worker_http(&mut settings, args.worker_http);
            if let Some(url) = args.queue_url {
                settings.queue.url = Some(url);
            }
            if let Some(bucket) = args.ingress_bucket {
                settings.ingress.bucket = Some(bucket);
            }
            if let Some(bucket) = args.egress_bucket {
                settings.egress.bucket = Some(bucket);
            }
            let control = worker::Control {
                interrupt: shutdown,
                drain: CancellationToken::new(),
            };
            run_worker(&settings, control).await.map(|_| ())
        }
        Command::Transcode(args) => transcode(args, shutdown).await,
        Command::Scaler(args) => run_scaler(args, shutdown).await,
        Command::Loadtest(args) => run_loadtest(args, shutdown).await,
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

/// Seconds from a flag, refusing what is not a finite, non-negative number.
fn flag_secs(flag: &str, secs: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(secs)
        .map_err(|_| anyhow::anyhow!("--{flag} {secs} is not a number of seconds"))
}

/// `spherecast loadtest`: virtual viewers against a live HLS URL, then the reports.
async fn run_loadtest(args: LoadtestArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (viewers, ramp, duration) = args.preset.map_or(
        (10, Duration::ZERO, Duration::from_secs(60)),
        loadtest::Preset::values,
    );
    let mut config = loadtest::Config::new(
        args.url,
        args.viewers.unwrap_or(viewers),
        match args.ramp {
            Some(secs) => flag_secs("ramp", secs)?,
            None => ramp,
        },
        match args.duration {
            Some(secs) => flag_secs("duration", secs)?,
            None => duration,
        },
    );
    config.variant = args.variant;
    config.timeout = flag_secs("timeout", args.timeout)?;
    config.progress = flag_secs("progress", args.progress)?;
    // The limits are checked before anything is written or connected.
    config.validate()?;
    let report = loadtest::run(config, shutdown).await?;
    if let Some(path) = &args.json {
        let json = serde_json::to_vec_pretty(&report).context("encoding the JSON report")?;
        std::fs::write(path, json)
            .with_context(|| format!("cannot write the JSON report {}", path.display()))?;
    }
    if let Some(path) = &args.report {
        std::fs::write(path, loadtest::html::render(&report))
            .with_context(|| format!("cannot write the HTML report {}", path.display()))?;
    }
    print!("{}", loadtest::summary_text(&report));
    Ok(())
}

/// `spherecast scaler`: the fleet's size from the SQS queue's counters.
async fn run_scaler(args: ScalerArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    if let Some(ScalerAction::Simulate(sim)) = args.action {
        let table = tokio::task::spawn_blocking(move || {
            // The message already names its cause: no chain to print after it.
            scaler::sim::run(&sim.trace, sim.setup.as_deref(), sim.svg_dir.as_deref())
                .map_err(|err| anyhow::anyhow!("{err}"))
        })
        .await
        .context("the simulation panicked")??;
        print!("{table}");
        return Ok(());
    }
    let mut settings = load(&args.files)?;
    if let Some(url) = args.queue_url {
        settings.queue.url = Some(url);
    }
    let queue_url =
        settings.queue.url.as_deref().context(
            "the scaler sizes a fleet from an SQS queue: set [queue] url or --queue-url",
        )?;
    let sdk = cloud::aws::sdk_config(
        settings.aws.endpoint_url.as_deref(),
        settings.aws.region.as_deref(),
    )
    .await;
    let default_state = settings.origin.data_dir.join("scaler").join("state.json");
    let scaler = scaler::Scaler::from_config(&settings.scaler, queue_url, &sdk, &default_state)?;
    if args.once {
        let report = scaler
            .run_once(scaler::runner::unix_now(), args.dry_run)
            .await
            .context("scaler run failed, nothing changed")?;
        println!("{report}");
        return Ok(());
    }
    let period = Duration::from_secs(settings.scaler.interval_secs);
    info!(
        fleet = %scaler.fleet(),
        every_secs = period.as_secs(),
        dry_run = args.dry_run,
        "Starting the scaler."
    );
    scaler
        .run_loop(period, args.dry_run, shutdown.cancelled())
        .await;
    Ok(())
}

/// All services in one process, sharing the local buckets and the embedded queue.
async fn up(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let ingress = ingress(&settings).await?;
    info!(data = %settings.origin.data_dir.display(), "Starting spherecast up.");
    let control = worker::Control {
        interrupt: shutdown.child_token(),
        drain: CancellationToken::new(),
    };
    let worker = async {
        run_worker(&settings, control).await?;
        // A worker that drained or went idle leaves the origin running.
        shutdown.cancelled().await;
        anyhow::Ok(())
    };
    let origin = origin::run(settings.origin.clone(), ingress, shutdown.clone());
    tokio::try_join!(origin, worker).map(|_| ())
}

/// Builds the worker's ports (SQS + S3, or the embedded queue + local folders) and runs it.
async fn run_worker(settings: &Settings, control: worker::Control) -> anyhow::Result<worker::Exit> {
    let data = &settings.origin.data_dir;
    let needs_aws = settings.queue.url.is_some()
        || settings.ingress.bucket.is_some()
        || settings.egress.bucket.is_some();
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
    let local_store =
        |dir: &Option<PathBuf>, name: &str| -> anyhow::Result<Arc<dyn cloud::ObjectStore>> {
            let dir = dir.clone().unwrap_or_else(|| data.join(name));
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create the {name} folder {}", dir.display()))?;
            Ok(Arc::new(cloud::LocalStore::new(dir, name.to_string())))
        };
    let s3_store = |bucket: &str| -> Arc<dyn cloud::ObjectStore> {
        let aws = aws.as_ref().expect("AWS configuration loaded for a bucket");
        Arc::new(cloud::S3Store::new(
            cloud::aws::s3_client(aws, false),
            bucket.to_string(),
        ))
    };
    let ingress = match &settings.ingress.bucket {
        Some(bucket) => s3_store(bucket),
        None => local_store(&settings.ingress.dir, "ingress")?,
    };
    let egress = match &settings.egress.bucket {
        Some(bucket) => s3_store(bucket),
        None => local_store(&settings.egress.dir, "egress")?,
    };
    let queue: Arc<dyn cloud::Queue> = match (&settings.queue.url, &aws) {
        (Some(url), Some(aws)) => Arc::new(cloud::SqsQueue::new(
            cloud::aws::sqs_client(aws),
            url.clone(),
        )),
        (Some(_), None) => unreachable!("a queue URL loads the AWS configuration"),
        (None, _) => {
            if settings.ingress.bucket.is_some() {
                anyhow::bail!(
                    "an ingress bucket is set but no queue URL: S3 events go to SQS, so set \
                     [queue] url (or --queue-url) for the worker"
                );
            }
            let dir = data.join("queue");
            Arc::new(
                cloud::EmbeddedQueue::open(&dir, settings.queue_settings()).with_context(|| {
                    format!("cannot open the embedded queue in {}", dir.display())
                })?,
            )
        }
    };
    let work_dir = settings
        .worker
        .work_dir
        .clone()
        .unwrap_or_else(|| data.join("work"));
    let protection: Option<Arc<dyn worker::protection::ScaleInProtection>> =
        if settings.worker.scale_in_protection {
            let aws = match &aws {
                Some(aws) => aws.clone(),
                None => {
                    cloud::aws::sdk_config(
                        settings.aws.endpoint_url.as_deref(),
                        settings.aws.region.as_deref(),
                    )
                    .await
                }
            };
            let protection = worker::protection::AutoScalingProtection::discover(
                aws_sdk_autoscaling::Client::new(&aws),
                &settings.worker.spot.metadata_url,
            )
            .await
            .context("worker.scale_in_protection is on")?;
            Some(Arc::new(protection))
        } else {
            None
        };
    let ports = worker::Ports {
        queue,
        ingress,
        egress,
        protection,
    };
    worker::run(settings.worker.clone(), work_dir, ports, control).await
}

/// `spherecast transcode INPUT OUTPUT`: one file, no queue.
async fn transcode(args: TranscodeArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let settings = Settings::load(args.config.as_deref())?;
    settings.worker.validate()?;
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("cannot create {}", args.output.display()))?;
    let input = args.input.clone();
    let output = args.output.clone();
    // The 360 rule looks at the name: the file name here, the key in a worker.
    let name = input
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let cancel = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = cancel.clone();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        flag.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let ladder = tokio::task::spawn_blocking(move || {
        worker::transcode::transcode_file(
            &settings.worker,
            &name,
            &input,
            &output,
            &cancel,
            &mut |p| {
                let percent = p.percent().map_or("?".to_string(), |v| format!("{v:.0}%"));
                info!(
                    percent,
                    speed = format!("{:.2}x", p.speed()),
                    "Transcoding."
                );
            },
        )
    })
    .await??;
    info!(
        output = %args.output.display(),
        renditions = ladder.renditions.len(),
        speed = format!("{:.2}x", ladder.speed),
        "Ladder written."
    );
    Ok(())
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
async fn watch_signals(shutdown: CancellationToken, message: &'static str) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler succeeds");
    for round in 0..2 {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        if round == 0 {
            info!("{message}");
            shutdown.cancel();
        } else {
            std::process::exit(130);
        }
    }
}
