//! The object-store contract. Each behaviour is one function over `&dyn ObjectStore`, run
//! against a `LocalStore` in a temporary folder and an `S3Store` on a moto server on loopback
//! (one server per test, so tests share nothing).

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use cloud::{LocalStore, ObjectStore, PutOptions, S3Store, StoreError};
use md5::{Digest, Md5};
use tempfile::TempDir;
use testkit::moto::MotoServer;

const MIB: usize = 1024 * 1024;

/// A store under test plus what must live as long as it.
struct Fixture {
    store: Box<dyn ObjectStore>,
    /// Local files written and read by the test.
    scratch: TempDir,
    _data: TempDir,
    _moto: Option<MotoServer>,
}

async fn local_store() -> Fixture {
    let data = tempfile::tempdir().unwrap();
    let store = LocalStore::new(data.path().join("ingress"), "ingress");
    Fixture {
        store: Box::new(store),
        scratch: tempfile::tempdir().unwrap(),
        _data: data,
        _moto: None,
    }
}

/// Uploads of 6 MiB or more go in 5 MiB parts, so an 11 MiB file takes three.
async fn s3_store() -> Fixture {
    let moto = MotoServer::start().expect("moto server starts");
    let client = cloud::aws::s3_client(&common::aws_config(&moto.endpoint).await, false);
    let store = S3Store::new(client, common::unique_name("contract"))
        .with_multipart(6 * MIB as u64, 5 * MIB as u64);
    store
        .create_bucket_if_missing()
        .await
        .expect("bucket created");
    Fixture {
        store: Box::new(store),
        scratch: tempfile::tempdir().unwrap(),
        _data: tempfile::tempdir().unwrap(),
        _moto: Some(moto),
    }
}

/// Runs each behaviour against both stores.
macro_rules! contract {
    ($($behaviour:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test]
                async fn $behaviour() {
                    let fixture = super::local_store().await;
                    super::$behaviour(&*fixture.store, fixture.scratch.path()).await;
                }
            )*
        }
        mod s3 {
            $(
                #[tokio::test]
                async fn $behaviour() {
                    let fixture = super::s3_store().await;
                    super::$behaviour(&*fixture.store, fixture.scratch.path()).await;
                }
            )*
        }
    };
}

contract!(
    bytes_round_trip,
    file_round_trips_byte_exact,
    large_file_round_trips_byte_exact,
    key_with_spaces_plus_and_unicode_round_trips,
    head_of_missing_key_is_none,
    get_of_missing_key_is_not_found,
    etag_is_quoted_md5_for_single_part,
    content_type_and_cache_control_round_trip,
    user_metadata_round_trips,
    large_file_keeps_its_user_metadata,
    metadata_s3_would_alter_is_rejected,
    list_by_prefix_in_key_order,
    overwrite_replaces_content_and_metadata,
    delete_removes_and_is_idempotent,
    invalid_keys_are_rejected,
);

/// Deterministic bytes that are not all alike (every byte value, no repeating pattern of a
/// power-of-two length that could hide an off-by-a-part error).
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn quoted_md5(bytes: &[u8]) -> String {
    format!("\"{:x}\"", Md5::digest(bytes))
}

fn plain() -> PutOptions {
    PutOptions::default()
}

fn metadata(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|&(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

async fn bytes_round_trip(store: &dyn ObjectStore, scratch: &Path) {
    let body = pseudo_random(1000, 1);
    let put = store
        .put_bytes("clips/a.ts", Bytes::from(body.clone()), &plain())
        .await
        .unwrap();
    assert_eq!(put.key, "clips/a.ts");
    assert_eq!(put.size, 1000);

    let dest = scratch.join("a.ts");
    let got = store.get_to_file("clips/a.ts", &dest).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!((got.size, got.etag), (put.size, put.etag));
}

async fn file_round_trips_byte_exact(store: &dyn ObjectStore, scratch: &Path) {
    let body = pseudo_random(300_001, 2);
    let source = scratch.join("source.mp4");
    std::fs::write(&source, &body).unwrap();
    let put = store
        .put_file("rec/live-1.mp4", &source, &plain())
        .await
        .unwrap();
    assert_eq!(put.size, body.len() as u64);

    // Into a folder that does not exist yet.
    let dest = scratch.join("downloads/nested/live-1.mp4");
    let got = store.get_to_file("rec/live-1.mp4", &dest).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(got.size, body.len() as u64);
    assert_eq!(
        store
            .head("rec/live-1.mp4")
            .await
            .unwrap()
            .map(|info| info.size),
        Some(body.len() as u64)
    );
}

async fn large_file_round_trips_byte_exact(store: &dyn ObjectStore, scratch: &Path) {
    let body = pseudo_random(11 * MIB + 12_345, 3);
    let source = scratch.join("big.mp4");
    std::fs::write(&source, &body).unwrap();
    let put = store
        .put_file("rec/big.mp4", &source, &plain())
        .await
        .unwrap();
    assert_eq!(put.size, body.len() as u64);

    let dest = scratch.join("big-copy.mp4");
    store.get_to_file("rec/big.mp4", &dest).await.unwrap();
    let copy = std::fs::read(&dest).unwrap();
    assert_eq!(copy.len(), body.len());
    assert!(
        copy == body,
        "downloaded bytes differ from the uploaded file"
    );
    let head = store
        .head("rec/big.mp4")
        .await
        .unwrap()
        .expect("uploaded object exists");
    assert_eq!((head.size, head.etag), (put.size, put.etag));
}

async fn key_with_spaces_plus_and_unicode_round_trips(store: &dyn ObjectStore, scratch: &Path) {
    let key = "rec/my show+1 ü=2.mp4";
    store
        .put_bytes(key, Bytes::from_static(b"odd key"), &plain())
        .await
        .unwrap();
    let dest = scratch.join("odd.mp4");
    store.get_to_file(key, &dest).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), b"odd key");
    let keys: Vec<String> = store
        .list("rec/")
        .await
        .unwrap()
        .into_iter()
        .map(|info| info.key)
        .collect();
    assert_eq!(keys, [key]);
}

async fn head_of_missing_key_is_none(store: &dyn ObjectStore, _scratch: &Path) {
    assert_eq!(store.head("no/such/key.ts").await.unwrap(), None);
}

async fn get_of_missing_key_is_not_found(store: &dyn ObjectStore, scratch: &Path) {
    let dest = scratch.join("missing.ts");
    let err = store
        .get_to_file("no/such/key.ts", &dest)
        .await
        .unwrap_err();
    match &err {
        StoreError::NotFound { bucket, key } => {
            assert_eq!(bucket, store.bucket());
            assert_eq!(key, "no/such/key.ts");
        }
        other => panic!("expected NotFound, got {other}"),
    }
    assert!(!err.is_transient());
    assert!(
        !dest.exists(),
        "a failed download must not leave a file behind"
    );
}

async fn etag_is_quoted_md5_for_single_part(store: &dyn ObjectStore, _scratch: &Path) {
    let expected = "\"5d41402abc4b2a76b9719d911017c592\"";
    let put = store
        .put_bytes("hello.txt", Bytes::from_static(b"hello"), &plain())
        .await
        .unwrap();
    assert_eq!(put.etag, expected);
    assert_eq!(
        store.head("hello.txt").await.unwrap().unwrap().etag,
        expected
    );
    assert_eq!(store.list("hello").await.unwrap()[0].etag, expected);
}

async fn content_type_and_cache_control_round_trip(store: &dyn ObjectStore, scratch: &Path) {
    let opts = PutOptions {
        content_type: Some("application/vnd.apple.mpegurl".to_owned()),
        cache_control: Some("max-age=3".to_owned()),
        ..plain()
    };
    let put = store
        .put_bytes("live/a.m3u8", Bytes::from_static(b"#EXTM3U\n"), &opts)
        .await
        .unwrap();
    assert_eq!(
        (put.content_type.as_deref(), put.cache_control.as_deref()),
        (Some("application/vnd.apple.mpegurl"), Some("max-age=3"))
    );

    let head = store.head("live/a.m3u8").await.unwrap().unwrap();
    assert_eq!(head.content_type, opts.content_type);
    assert_eq!(head.cache_control, opts.cache_control);

    let source = scratch.join("seg.ts");
    std::fs::write(&source, b"ts").unwrap();
    let ts_opts = PutOptions {
        content_type: Some("video/mp2t".to_owned()),
        cache_control: Some("max-age=900".to_owned()),
        ..plain()
    };
    store
        .put_file("live/0.ts", &source, &ts_opts)
        .await
        .unwrap();
    let got = store
        .get_to_file("live/0.ts", &scratch.join("seg-copy.ts"))
        .await
        .unwrap();
    assert_eq!(got.content_type, ts_opts.content_type);
    assert_eq!(got.cache_control, ts_opts.cache_control);
}

async fn user_metadata_round_trips(store: &dyn ObjectStore, scratch: &Path) {
    let opts = PutOptions {
        metadata: metadata(&[
            ("stream", "live/cam-1"),
            ("source-etag", "\"5d41402abc4b2a76b9719d911017c592\""),
            ("started-at", "2024-05-01T10:00:00Z"),
            ("note", "a b ~!@#$%^&*()_+={}[]|:;'<>,.?/"),
            ("empty", ""),
        ]),
        ..plain()
    };
    let put = store
        .put_bytes("rec/a.mp4", Bytes::from_static(b"mp4"), &opts)
        .await
        .unwrap();
    assert_eq!(put.metadata, opts.metadata);

    let head = store.head("rec/a.mp4").await.unwrap().unwrap();
    assert_eq!(head.metadata, opts.metadata);
    let got = store
        .get_to_file("rec/a.mp4", &scratch.join("a.mp4"))
        .await
        .unwrap();
    assert_eq!(got.metadata, opts.metadata);
    // Like content type, metadata is not listed.
    let listed = store.list("rec/").await.unwrap();
    assert!(listed[0].metadata.is_empty(), "{:?}", listed[0].metadata);

    let source = scratch.join("b.mp4");
    std::fs::write(&source, b"mp4").unwrap();
    let put = store.put_file("rec/b.mp4", &source, &opts).await.unwrap();
    assert_eq!(put.metadata, opts.metadata);
    let head = store.head("rec/b.mp4").await.unwrap().unwrap();
    assert_eq!(head.metadata, opts.metadata);

    store
        .put_bytes("rec/plain.mp4", Bytes::from_static(b"mp4"), &plain())
        .await
        .unwrap();
    let head = store.head("rec/plain.mp4").await.unwrap().unwrap();
    assert!(head.metadata.is_empty(), "{:?}", head.metadata);
}

/// On S3 this goes through CreateMultipartUpload.
async fn large_file_keeps_its_user_metadata(store: &dyn ObjectStore, scratch: &Path) {
    let source = scratch.join("big.mp4");
    std::fs::write(&source, pseudo_random(7 * MIB, 5)).unwrap();
    let opts = PutOptions {
        metadata: metadata(&[("stream", "cam-2")]),
        ..plain()
    };
    let put = store.put_file("rec/big.mp4", &source, &opts).await.unwrap();
    assert_eq!(put.metadata, opts.metadata);
    let head = store.head("rec/big.mp4").await.unwrap().unwrap();
    assert_eq!(head.metadata, opts.metadata);
}

async fn metadata_s3_would_alter_is_rejected(store: &dyn ObjectStore, scratch: &Path) {
    let source = scratch.join("x.ts");
    std::fs::write(&source, b"x").unwrap();
    for (name, value) in [
        ("Stream", "upper-case name"),
        ("stream_id", "underscore"),
        ("", "empty name"),
        ("stream", "caf\u{e9}"),
        ("stream", "line\nbreak"),
        ("stream", "trailing space "),
    ] {
        let opts = PutOptions {
            metadata: metadata(&[(name, value)]),
            ..plain()
        };
        let err = store
            .put_bytes("x.ts", Bytes::from_static(b"x"), &opts)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Rejected { key, .. } if key == "x.ts"),
            "{name:?}={value:?}: {err}"
        );
        assert!(err.to_string().contains("metadata"), "{err}");
        let err = store.put_file("x.ts", &source, &opts).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Rejected { .. }),
            "{name:?}={value:?}: {err}"
        );
    }
    let too_much = PutOptions {
        metadata: metadata(&[("a", &"x".repeat(1500)), ("b", &"y".repeat(1500))]),
        ..plain()
    };
    let err = store
        .put_bytes("x.ts", Bytes::from_static(b"x"), &too_much)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Rejected { .. }), "{err}");
    assert_eq!(store.head("x.ts").await.unwrap(), None, "nothing written");
}

async fn list_by_prefix_in_key_order(store: &dyn ObjectStore, _scratch: &Path) {
    for key in [
        "vod/x.ts",
        "live/b/1.ts",
        "live/ab.ts",
        "live/a/2.ts",
        "live/a/1.ts",
    ] {
        store
            .put_bytes(key, Bytes::from(key.as_bytes().to_vec()), &plain())
            .await
            .unwrap();
    }
    let keys = |objects: Vec<cloud::ObjectInfo>| {
        objects.into_iter().map(|info| info.key).collect::<Vec<_>>()
    };

    assert_eq!(
        keys(store.list("live/a").await.unwrap()),
        ["live/a/1.ts", "live/a/2.ts", "live/ab.ts"]
    );
    assert_eq!(
        keys(store.list("live/a/").await.unwrap()),
        ["live/a/1.ts", "live/a/2.ts"]
    );
    assert_eq!(
        keys(store.list("").await.unwrap()),
        [
            "live/a/1.ts",
            "live/a/2.ts",
            "live/ab.ts",
            "live/b/1.ts",
            "vod/x.ts"
        ]
    );
    assert!(store.list("nothing/").await.unwrap().is_empty());

    let listed = store.list("vod/").await.unwrap();
    assert_eq!(listed[0].size, "vod/x.ts".len() as u64);
    assert_eq!(listed[0].etag, quoted_md5(b"vod/x.ts"));
}

async fn overwrite_replaces_content_and_metadata(store: &dyn ObjectStore, scratch: &Path) {
    let first = PutOptions {
        content_type: Some("text/plain".to_owned()),
        metadata: metadata(&[("stream", "first"), ("only-first", "x")]),
        ..plain()
    };
    let second = PutOptions {
        content_type: Some("video/mp2t".to_owned()),
        cache_control: Some("max-age=900".to_owned()),
        metadata: metadata(&[("stream", "second")]),
    };
    store
        .put_bytes("seg.ts", Bytes::from_static(b"first version"), &first)
        .await
        .unwrap();
    store
        .put_bytes("seg.ts", Bytes::from_static(b"second"), &second)
        .await
        .unwrap();

    let dest = scratch.join("seg.ts");
    store.get_to_file("seg.ts", &dest).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), b"second");
    let head = store.head("seg.ts").await.unwrap().unwrap();
    assert_eq!(head.etag, quoted_md5(b"second"));
    assert_eq!(head.size, 6);
    assert_eq!(head.content_type, second.content_type);
    assert_eq!(head.cache_control, second.cache_control);
    assert_eq!(head.metadata, second.metadata);
    assert_eq!(store.list("").await.unwrap().len(), 1);
}

async fn delete_removes_and_is_idempotent(store: &dyn ObjectStore, _scratch: &Path) {
    store
        .put_bytes("gone.ts", Bytes::from_static(b"x"), &plain())
        .await
        .unwrap();
    store.delete("gone.ts").await.unwrap();
    assert_eq!(store.head("gone.ts").await.unwrap(), None);
    assert!(store.list("").await.unwrap().is_empty());
    store
        .delete("gone.ts")
        .await
        .expect("deleting a missing object succeeds");
}

async fn invalid_keys_are_rejected(store: &dyn ObjectStore, scratch: &Path) {
    for key in [
        "",
        "/etc/passwd",
        "../outside.ts",
        "a/../../b",
        "a\\b",
        "a//b",
    ] {
        let err = store
            .put_bytes(key, Bytes::from_static(b"x"), &plain())
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidKey { .. }),
            "{key:?}: {err}"
        );
        let err = store
            .get_to_file(key, &scratch.join("x"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidKey { .. }),
            "{key:?}: {err}"
        );
    }
}

#[tokio::test]
async fn s3_uploads_large_files_in_parts() {
    let fixture = s3_store().await;
    let source = fixture.scratch.path().join("big.mp4");
    std::fs::write(&source, pseudo_random(11 * MIB, 4)).unwrap();
    let put = fixture
        .store
        .put_file("big.mp4", &source, &plain())
        .await
        .unwrap();
    // A multipart eTag is the MD5 of the part MD5s, suffixed with the part count.
    assert!(
        put.etag.ends_with("-3\""),
        "expected a three-part eTag, got {}",
        put.etag
    );
}

#[tokio::test]
async fn s3_unreachable_endpoint_is_a_transient_error() {
    let closed = format!("http://127.0.0.1:{}", testkit::net::free_port());
    let client = cloud::aws::s3_client(&common::aws_config(&closed).await, false);
    let store = S3Store::new(client, "ingress");
    let err = store.head("a.ts").await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Unreachable {
                op: "HeadObject",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.is_transient());
    let message = err.to_string();
    assert!(
        message.contains("a.ts") && message.contains("ingress") && message.contains("endpoint URL"),
        "{message}"
    );
}

#[tokio::test]
async fn s3_missing_bucket_is_rejected_naming_the_bucket() {
    let fixture = s3_store().await;
    let moto = fixture._moto.as_ref().unwrap();
    let client = cloud::aws::s3_client(&common::aws_config(&moto.endpoint).await, false);
    let store = S3Store::new(client, "no-such-bucket");
    let err = store
        .put_bytes("a.ts", Bytes::from_static(b"x"), &plain())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Rejected { .. }), "{err}");
    assert!(err.to_string().contains("no-such-bucket"), "{err}");
}
