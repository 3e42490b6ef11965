//! The object-store contract. Each behaviour is one function over `&dyn ObjectStore`, run
//! against a `LocalStore` in a temporary folder and an `S3Store` on a moto server on loopback
//! (one server per test, so tests share nothing).

mod common;

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
        cache_control: None,
    };
    let second = PutOptions {
        content_type: Some("video/mp2t".to_owned()),
        cache_control: Some("max-age=900".to_owned()),
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
