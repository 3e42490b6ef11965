//! `bootstrap` for the `provided.al2023` Lambda runtime: the scaler on an EventBridge
//! schedule. See the README ("The scaler as a Lambda") for packaging.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use scaler::lambda::{CONFIG_VARIABLE, LambdaSettings, handle};
use scaler::runner::Scaler;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .without_time() // CloudWatch Logs stamps every line.
        .init();
    let text = std::env::var(CONFIG_VARIABLE).map_err(|_| {
        format!("{CONFIG_VARIABLE} is not set: it must hold the TOML configuration")
    })?;
    let settings = LambdaSettings::parse(&text)?;
    let sdk = cloud::aws::sdk_config(
        settings.aws.endpoint_url.as_deref(),
        settings.aws.region.as_deref(),
    )
    .await;
    // The state is always in S3 in a Lambda (checked by `parse`), so the default is unused.
    let scaler = Scaler::from_config(
        &settings.scaler,
        &settings.queue.url,
        &sdk,
        std::path::Path::new("/tmp/spherecast-scaler-state.json"),
    )?;
    let scaler = &scaler;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| async move {
        // The error's text becomes the invocation's error message in CloudWatch.
        handle(scaler, event).await.map_err(Error::from)
    }))
    .await
}
