//! S3 event notifications: decoding real S3 and moto events, encoding the same JSON locally.
//!
//! Keys: S3 sends object keys URL-encoded (`red flower.jpg` arrives as `red+flower.jpg`), and
//! so do MinIO and moto from 5.1.9 on (with `%2F` for `/`). moto 5.1.4, which the tests use,
//! sends keys verbatim and leaves out `userIdentity`, `requestParameters` and
//! `responseElements`. So: a record carrying any of those is decoded as S3 does; a record
//! without them is decoded only when the key looks encoded (nothing in it that an encoder
//! would have escaped, such as a space or a non-ASCII letter). A verbatim key made only of
//! such safe characters plus `+` or `%XY` is ambiguous; it is decoded, as newer moto needs.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde_json::{Map, Value, json};

/// One `Records[]` entry of an S3 event, key already URL-decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub event_name: String,
    pub bucket: String,
    pub key: String,
    pub size: u64,
    pub etag: String,
    /// `eventTime` (UTC), when present and readable: when the object was written.
    pub event_time: Option<time::OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum S3Event {
    Records(Vec<EventRecord>),
    /// `s3:TestEvent`, sent when a notification is configured.
    Test,
}

/// Why a message body is not an S3 event this crate understands.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("event body is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("event body is JSON but not an object (found {found})")]
    NotAnObject { found: &'static str },
    #[error(
        "event body has no \"Records\" (and is not an s3:TestEvent): not an S3 event notification"
    )]
    NoRecords,
    #[error("event body's \"Records\" is empty")]
    EmptyRecords,
    #[error("event body's \"Records\" is not an array")]
    RecordsNotArray,
    #[error("event body is an unknown S3 event {0:?}")]
    UnknownEvent(String),
    #[error("event record {index} has no {field}")]
    MissingField { index: usize, field: &'static str },
    #[error("event record {index}: {field} is not {expected}")]
    WrongType {
        index: usize,
        field: &'static str,
        expected: &'static str,
    },
    #[error("event record {index}: key {key:?} does not decode to UTF-8")]
    KeyNotUtf8 { index: usize, key: String },
}

impl S3Event {
    /// Decodes an SQS message body holding an S3 event notification, as sent by S3 (also
    /// through SNS, which wraps it in a `Notification` envelope), moto server, or
    /// [`object_created_event`].
    pub fn decode(body: &str) -> Result<S3Event, EventError> {
        let value: Value = serde_json::from_str(body).map_err(EventError::NotJson)?;
        let object = value.as_object().ok_or(EventError::NotAnObject {
            found: json_type(&value),
        })?;

        // S3 -> SNS -> SQS: the event is the string in "Message".
        if object.get("Type").and_then(Value::as_str) == Some("Notification")
            && let Some(message) = object.get("Message").and_then(Value::as_str)
        {
            return S3Event::decode(message);
        }
        if let Some(event) = object.get("Event") {
            return match event.as_str() {
                Some("s3:TestEvent") => Ok(S3Event::Test),
                Some(other) => Err(EventError::UnknownEvent(other.to_owned())),
                None => Err(EventError::UnknownEvent(event.to_string())),
            };
        }
        let records = match object.get("Records") {
            None | Some(Value::Null) => return Err(EventError::NoRecords),
            Some(Value::Array(records)) => records,
            Some(_) => return Err(EventError::RecordsNotArray),
        };
        if records.is_empty() {
            return Err(EventError::EmptyRecords);
        }
        records
            .iter()
            .enumerate()
            .map(|(index, record)| decode_record(index, record))
            .collect::<Result<_, _>>()
            .map(S3Event::Records)
    }
}

fn decode_record(index: usize, record: &Value) -> Result<EventRecord, EventError> {
    let record = record.as_object().ok_or(EventError::WrongType {
        index,
        field: "record",
        expected: "an object",
    })?;
    let event_name = string(index, record, "eventName", "eventName")?;
    let s3 = object(index, record, "s3", "s3")?;
    let bucket = string(
        index,
        object(index, s3, "bucket", "s3.bucket")?,
        "name",
        "s3.bucket.name",
    )?;
    let object_value = object(index, s3, "object", "s3.object")?;
    let raw_key = string(index, object_value, "key", "s3.object.key")?;
    let size = match object_value.get("size") {
        None | Some(Value::Null) => 0,
        Some(size) => size.as_u64().ok_or(EventError::WrongType {
            index,
            field: "s3.object.size",
            expected: "a non-negative integer",
        })?,
    };
    let etag = match object_value.get("eTag") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(etag)) => etag.clone(),
        Some(_) => {
            return Err(EventError::WrongType {
                index,
                field: "s3.object.eTag",
                expected: "a string",
            });
        }
    };
    let from_s3 = ["userIdentity", "requestParameters", "responseElements"]
        .iter()
        .any(|field| record.contains_key(*field));
    let key = if from_s3 || looks_encoded(&raw_key) {
        decode_key(index, &raw_key)?
    } else {
        raw_key
    };
    let event_time = record
        .get("eventTime")
        .and_then(Value::as_str)
        .and_then(parse_event_time);
    Ok(EventRecord {
        event_name,
        bucket,
        key,
        size,
        etag,
        event_time,
    })
}

/// `2024-05-01T12:34:56.789Z` as S3 writes it, or `2026-11-21T00:58:57.477320` as moto does
/// (no zone: UTC).
fn parse_event_time(text: &str) -> Option<time::OffsetDateTime> {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    let text = text.strip_suffix('Z').unwrap_or(text);
    time::PrimitiveDateTime::parse(text, format)
        .ok()
        .map(time::PrimitiveDateTime::assume_utc)
}

fn object<'a>(
    index: usize,
    parent: &'a Map<String, Value>,
    name: &str,
    field: &'static str,
) -> Result<&'a Map<String, Value>, EventError> {
    match parent.get(name) {
        None | Some(Value::Null) => Err(EventError::MissingField { index, field }),
        Some(value) => value.as_object().ok_or(EventError::WrongType {
            index,
            field,
            expected: "an object",
        }),
    }
}

fn string(
    index: usize,
    parent: &Map<String, Value>,
    name: &str,
    field: &'static str,
) -> Result<String, EventError> {
    match parent.get(name) {
        None | Some(Value::Null) => Err(EventError::MissingField { index, field }),
        Some(Value::String(value)) => Ok(value.clone()),
        Some(_) => Err(EventError::WrongType {
            index,
            field,
            expected: "a string",
        }),
    }
}

/// True when nothing in `key` would have been escaped by an S3-style encoder.
fn looks_encoded(key: &str) -> bool {
    key.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.*~/+%".contains(&b))
}

/// `+` is a space, `%XY` a byte, as S3 encodes keys in events.
fn decode_key(index: usize, key: &str) -> Result<String, EventError> {
    let spaced = key.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| EventError::KeyNotUtf8 {
            index,
            key: key.to_owned(),
        })
}

/// What S3 escapes in event keys: everything but letters, digits, `-_.*` and `/` (a space
/// is then written as `+`).
const S3_KEY_ESCAPES: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'*')
    .remove(b'/');

/// Encodes a key as S3 does in event notifications: `my file+1.mp4` -> `my+file%2B1.mp4`.
pub fn encode_key(key: &str) -> String {
    utf8_percent_encode(key, S3_KEY_ESCAPES)
        .to_string()
        .replace("%20", "+")
}

/// The region written into locally made events (they come from no region).
pub const LOCAL_REGION: &str = "us-east-1";

/// The body S3 sends for an `ObjectCreated:Put` of `key` in `bucket`, so that the embedded
/// queue carries what SQS would. `etag` may be given with or without its quotes.
pub fn object_created_event(bucket: &str, key: &str, size: u64, etag: &str) -> String {
    object_created_event_at(bucket, key, size, etag, time::OffsetDateTime::now_utc())
}

fn object_created_event_at(
    bucket: &str,
    key: &str,
    size: u64,
    etag: &str,
    at: time::OffsetDateTime,
) -> String {
    let event_time = at
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        ))
        .expect("a UTC timestamp always formats");
    // S3's sequencer orders events for one key: fixed-width upper-case hex of the time.
    let sequencer = format!("{:016X}", at.unix_timestamp_nanos());
    let request_id = uuid::Uuid::new_v4().simple().to_string()[..16].to_uppercase();
    json!({
        "Records": [{
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": LOCAL_REGION,
            "eventTime": event_time,
            "eventName": "ObjectCreated:Put",
            "userIdentity": { "principalId": "spherecast" },
            "requestParameters": { "sourceIPAddress": "127.0.0.1" },
            "responseElements": {
                "x-amz-request-id": request_id,
                "x-amz-id-2": "spherecast-local",
            },
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "spherecast-local",
                "bucket": {
                    "name": bucket,
                    "ownerIdentity": { "principalId": "spherecast" },
                    "arn": format!("arn:aws:s3:::{bucket}"),
                },
                "object": {
                    "key": encode_key(key),
                    "size": size,
                    "eTag": etag.trim_matches('"'),
                    "sequencer": sequencer,
                },
            },
        }]
    })
    .to_string()
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(event: S3Event) -> EventRecord {
        match event {
            S3Event::Records(mut records) if records.len() == 1 => records.remove(0),
            other => panic!("expected one record, got {other:?}"),
        }
    }

    #[test]
    fn locally_made_event_round_trips() {
        let key = "rec/my live+show ü %.mp4";
        let body =
            object_created_event("ingress", key, 1234, "\"5d41402abc4b2a76b9719d911017c592\"");
        let decoded = record(S3Event::decode(&body).unwrap());
        assert_eq!(
            decoded,
            EventRecord {
                event_name: "ObjectCreated:Put".into(),
                bucket: "ingress".into(),
                key: key.into(),
                size: 1234,
                etag: "5d41402abc4b2a76b9719d911017c592".into(),
                event_time: decoded.event_time,
            }
        );
        let age = time::OffsetDateTime::now_utc() - decoded.event_time.unwrap();
        assert!(age.whole_seconds().abs() < 60, "event time is now: {age}");
    }

    #[test]
    fn locally_made_event_has_the_shape_s3_sends() {
        let at = time::macros::datetime!(2024-05-01 12:34:56.789 UTC);
        let body = object_created_event_at("ingress", "a b/c+d.mp4", 7, "abc", at);
        let value: Value = serde_json::from_str(&body).unwrap();
        let record = &value["Records"][0];
        assert_eq!(record["eventVersion"], "2.1");
        assert_eq!(record["eventSource"], "aws:s3");
        assert_eq!(record["eventTime"], "2024-05-01T12:34:56.789Z");
        let S3Event::Records(decoded) = S3Event::decode(&body).unwrap() else {
            panic!("records expected");
        };
        assert_eq!(
            decoded[0]
                .event_time
                .map(|t| t.unix_timestamp_nanos() / 1_000_000),
            Some(1_714_566_896_789)
        );
        assert_eq!(record["eventName"], "ObjectCreated:Put");
        assert!(record["userIdentity"]["principalId"].is_string());
        assert!(record["requestParameters"]["sourceIPAddress"].is_string());
        assert!(record["responseElements"]["x-amz-request-id"].is_string());
        assert_eq!(record["s3"]["s3SchemaVersion"], "1.0");
        assert_eq!(record["s3"]["bucket"]["arn"], "arn:aws:s3:::ingress");
        assert_eq!(record["s3"]["object"]["key"], "a+b/c%2Bd.mp4");
        assert_eq!(record["s3"]["object"]["eTag"], "abc");
        assert_eq!(record["s3"]["object"]["size"], 7);
        assert_eq!(
            record["s3"]["object"]["sequencer"].as_str().map(str::len),
            Some(16)
        );
    }

    #[test]
    fn keys_are_encoded_as_s3_does() {
        assert_eq!(encode_key("red flower.jpg"), "red+flower.jpg");
        assert_eq!(encode_key("a/b=c:d.mp4"), "a/b%3Dc%3Ad.mp4");
        assert_eq!(encode_key("ü+"), "%C3%BC%2B");
        assert_eq!(encode_key("keep-_.*"), "keep-_.*");
    }

    /// The documented example (notification-content-structure), with a key that uses both
    /// `+` for a space and `%2F` for a slash.
    const AWS_SAMPLE: &str = r#"{
      "Records": [{
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-west-2",
        "eventTime": "1970-01-01T00:00:00.000Z",
        "eventName": "ObjectCreated:CompleteMultipartUpload",
        "userIdentity": { "principalId": "AIDAJDPLRKLG7UEXAMPLE" },
        "requestParameters": { "sourceIPAddress": "127.0.0.1" },
        "responseElements": {
          "x-amz-request-id": "C3D13FE58DE4C810",
          "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD"
        },
        "s3": {
          "s3SchemaVersion": "1.0",
          "configurationId": "testConfigRule",
          "bucket": {
            "name": "mybucket",
            "ownerIdentity": { "principalId": "A3NL1KOZZKExample" },
            "arn": "arn:aws:s3:::mybucket"
          },
          "object": {
            "key": "recordings%2Fmy+live+show-1700000000.mp4",
            "size": 1024,
            "eTag": "d41d8cd98f00b204e9800998ecf8427e-2",
            "versionId": "096fKKXTRTtl3on89fVO.nfljtsv6qko",
            "sequencer": "0055AED6DCD90281E5"
          }
        }
      }]
    }"#;

    #[test]
    fn real_s3_event_is_decoded() {
        let decoded = record(S3Event::decode(AWS_SAMPLE).unwrap());
        assert_eq!(decoded.event_name, "ObjectCreated:CompleteMultipartUpload");
        assert_eq!(decoded.bucket, "mybucket");
        assert_eq!(decoded.key, "recordings/my live show-1700000000.mp4");
        assert_eq!(decoded.size, 1024);
        assert_eq!(decoded.etag, "d41d8cd98f00b204e9800998ecf8427e-2");
    }

    #[test]
    fn event_delivered_through_sns_is_unwrapped() {
        let envelope =
            json!({ "Type": "Notification", "MessageId": "x", "Message": AWS_SAMPLE }).to_string();
        let decoded = record(S3Event::decode(&envelope).unwrap());
        assert_eq!(decoded.key, "recordings/my live show-1700000000.mp4");
    }

    /// What moto 5.1.4 put on the queue for `dir/my file+x ü.mp4` (captured from a run).
    const MOTO_5_1_4: &str = r#"{"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1", "eventTime": "2026-11-21T00:58:57.477320", "eventName": "ObjectCreated:Put", "s3": {"s3SchemaVersion": "1.0", "configurationId": "d4qFrfT2AUYy1YHaLcEo9UGffzOwZv9HtTsYBzAGIL3u5DHQaE", "bucket": {"name": "ingress", "arn": "arn:aws:s3:::ingress"}, "object": {"key": "dir/my file+x \u00fc.mp4", "size": 5, "eTag": "5d41402abc4b2a76b9719d911017c592"}}}]}"#;

    #[test]
    fn moto_event_with_verbatim_key_is_decoded() {
        let decoded = record(S3Event::decode(MOTO_5_1_4).unwrap());
        assert_eq!(decoded.event_name, "ObjectCreated:Put");
        assert_eq!(decoded.bucket, "ingress");
        assert_eq!(decoded.key, "dir/my file+x ü.mp4");
        assert_eq!(decoded.size, 5);
        assert_eq!(decoded.etag, "5d41402abc4b2a76b9719d911017c592");
        let at = decoded
            .event_time
            .expect("moto's zone-less eventTime reads as UTC");
        assert_eq!(at.unix_timestamp(), 1_795_222_737);
        assert_eq!(at.microsecond(), 477_320);
    }

    #[test]
    fn moto_event_with_encoded_key_is_decoded() {
        let body = MOTO_5_1_4.replace(
            r#""dir/my file+x \u00fc.mp4""#,
            r#""dir%2Fmy+file%2Bx+%C3%BC.mp4""#,
        );
        assert_eq!(
            record(S3Event::decode(&body).unwrap()).key,
            "dir/my file+x ü.mp4"
        );
    }

    #[test]
    fn missing_etag_and_size_default() {
        let body = r#"{"Records":[{"eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}]}"#;
        let decoded = record(S3Event::decode(body).unwrap());
        assert_eq!((decoded.size, decoded.etag.as_str()), (0, ""));
    }

    #[test]
    fn test_event_is_recognised() {
        let body = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2024-01-01T00:00:00.000Z","Bucket":"ingress","RequestId":"5582815E1AEA5ADF","HostId":"8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE"}"#;
        assert_eq!(S3Event::decode(body).unwrap(), S3Event::Test);
    }

    #[test]
    fn malformed_bodies_say_what_is_wrong() {
        let cases: &[(&str, &str)] = &[
            ("not json", "not JSON"),
            ("[1,2]", "not an object (found an array)"),
            ("{}", "no \"Records\""),
            (r#"{"Records":[]}"#, "empty"),
            (r#"{"Records":{}}"#, "\"Records\" is not an array"),
            (r#"{"Event":"s3:Other"}"#, "unknown S3 event"),
            (r#"{"Records":[{"s3":{}}]}"#, "record 0 has no eventName"),
            (
                r#"{"Records":[{"eventName":"x","s3":{"bucket":{"name":"b"},"object":{}}}]}"#,
                "record 0 has no s3.object.key",
            ),
            (
                r#"{"Records":[{"eventName":"x","s3":{"bucket":{},"object":{"key":"k"}}}]}"#,
                "record 0 has no s3.bucket.name",
            ),
            (
                r#"{"Records":[{"eventName":"x","s3":{"bucket":{"name":"b"},"object":{"key":"k","size":-1}}}]}"#,
                "s3.object.size is not a non-negative integer",
            ),
            (
                r#"{"Records":[{"eventName":"x","s3":{"bucket":{"name":"b"},"object":{"key":7}}}]}"#,
                "s3.object.key is not a string",
            ),
            (
                r#"{"Records":[{"eventName":"x","userIdentity":{},"s3":{"bucket":{"name":"b"},"object":{"key":"%FF"}}}]}"#,
                "does not decode to UTF-8",
            ),
        ];
        for (body, expected) in cases {
            let err = S3Event::decode(body).expect_err(body);
            assert!(err.to_string().contains(expected), "{body}: {err}");
        }
    }
}
