//! AWS client configuration: region, credentials chain and an optional endpoint URL
//! (`AWS_ENDPOINT_URL`, for moto server or any S3/SQS-compatible service).
//!
//! Nothing here reads or writes process environment variables directly: the default chain of
//! `aws-config` reads them, and tests pass the endpoint, region and credentials explicitly.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::config::RequestChecksumCalculation;

pub use aws_sdk_s3::config::Credentials;

/// Loads the shared AWS configuration from the usual sources (environment, profile files,
/// container and instance metadata), as every AWS tool does.
///
/// `endpoint_url` overrides the endpoint of every service (moto server, MinIO, LocalStack...);
/// when it is `None` the chain still honours `AWS_ENDPOINT_URL` and the profile's
/// `endpoint_url`. `region` overrides `AWS_REGION` / the profile / instance metadata.
pub async fn sdk_config(endpoint_url: Option<&str>, region: Option<&str>) -> SdkConfig {
    loader(endpoint_url, region).load().await
}

/// Like [`sdk_config`], with fixed credentials instead of the credentials chain: for tests
/// against moto server (which accepts any key, for example `Credentials::new("test", "test",
/// None, None, "static")`, see [`static_credentials`]) and for S3-compatible services whose
/// keys come from the service's own configuration.
pub async fn sdk_config_with_credentials(
    endpoint_url: Option<&str>,
    region: Option<&str>,
    credentials: Credentials,
) -> SdkConfig {
    loader(endpoint_url, region)
        .credentials_provider(credentials)
        .load()
        .await
}

/// Fixed credentials without a session token.
pub fn static_credentials(access_key_id: &str, secret_access_key: &str) -> Credentials {
    Credentials::new(
        access_key_id,
        secret_access_key,
        None,
        None,
        "spherecast-static",
    )
}

fn loader(endpoint_url: Option<&str>, region: Option<&str>) -> aws_config::ConfigLoader {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if let Some(region) = region {
        loader = loader.region(Region::new(region.to_owned()));
    }
    loader
}

/// An S3 client. Path-style addressing (`http://host/bucket/key`) is used when asked for and
/// whenever a custom endpoint is configured: S3-compatible services on loopback or behind a
/// single host name cannot serve virtual-hosted buckets (`http://bucket.host/key`).
///
/// With a custom endpoint, request checksums are also only sent where an operation requires
/// them: otherwise the SDK streams file uploads as signed `aws-chunked` bodies with a
/// trailing checksum, which many S3-compatible services do not decode (moto 5.1 stores the
/// chunk framing as the object's content). Uploads to AWS itself keep the SDK's default.
pub fn s3_client(config: &SdkConfig, force_path_style: bool) -> aws_sdk_s3::Client {
    let custom_endpoint = config.endpoint_url().is_some();
    let mut s3_config = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(force_path_style || custom_endpoint);
    if custom_endpoint {
        s3_config =
            s3_config.request_checksum_calculation(RequestChecksumCalculation::WhenRequired);
    }
    aws_sdk_s3::Client::from_conf(s3_config.build())
}

/// An SQS client (JSON protocol).
pub fn sqs_client(config: &SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn explicit_endpoint_region_and_credentials_win() {
        let config = sdk_config_with_credentials(
            Some("http://127.0.0.1:9"),
            Some("eu-west-1"),
            static_credentials("test", "test"),
        )
        .await;
        assert_eq!(config.endpoint_url(), Some("http://127.0.0.1:9"));
        assert_eq!(config.region().map(|r| r.as_ref()), Some("eu-west-1"));
        assert!(config.credentials_provider().is_some());
    }

    #[tokio::test]
    async fn custom_endpoint_sends_checksums_only_where_required() {
        let moto = sdk_config_with_credentials(
            Some("http://127.0.0.1:9"),
            Some("us-east-1"),
            static_credentials("test", "test"),
        )
        .await;
        let client = s3_client(&moto, false);
        assert_eq!(
            client.config().request_checksum_calculation(),
            Some(&RequestChecksumCalculation::WhenRequired)
        );
    }
}
