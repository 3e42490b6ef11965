//! Shared by the contract suites: AWS configuration for a moto server and unique names.

use cloud::aws::{sdk_config_with_credentials, static_credentials};

/// Configuration for moto server (or a closed port) on loopback: fixed credentials and
/// region, nothing taken from the environment that could point the test elsewhere.
pub async fn aws_config(endpoint: &str) -> aws_config::SdkConfig {
    sdk_config_with_credentials(
        Some(endpoint),
        Some("us-east-1"),
        static_credentials("test", "test"),
    )
    .await
}

/// A bucket or queue name no other test uses.
pub fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}
