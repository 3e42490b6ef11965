//! AWS client configuration: region, credentials chain and an optional endpoint URL
//! (`AWS_ENDPOINT_URL`, for moto server or any S3/SQS-compatible service).
