//! Recording file names: `NAME-EPOCH.flv` for the first part, `NAME-EPOCH-N.flv` after that,
//! and the guarantee that no two recordings ever get the same name.
//!
//! A name is taken only if the file does not exist (it is created with `O_EXCL`) *and* this
//! process has not handed it out before. The second check matters because a finished part
//! leaves the recording folder for the upload spool at once: a session that ends within its
//! first second and a new session of the same stream in that same second would otherwise both
//! get `NAME-EPOCH.flv`, and the second upload would overwrite the first.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::RecordError;

/// Longest stream name accepted, in bytes; leaves room for `-EPOCH-N.flv` within the usual
/// 255-byte file-name limit.
const MAX_STREAM_LEN: usize = 200;

/// Suffixes tried before giving up on finding a free name.
const MAX_SUFFIXES: u32 = 100_000;

/// Names handed out by this process and when. A name can only clash with a new one carrying
/// the same EPOCH, i.e. with a session that started in the same second; such sessions claim
/// their names within moments of each other, so an entry older than [`FORGET_AFTER`] can go.
static ISSUED: Mutex<Option<HashMap<PathBuf, Instant>>> = Mutex::new(None);
const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// Rejects stream names that would escape the recording folder or make an unusable file name.
pub(crate) fn check_stream_name(stream: &str) -> Result<(), RecordError> {
    let bad = stream.is_empty()
        || stream.len() > MAX_STREAM_LEN
        || stream.starts_with('.')
        || stream.contains(['/', '\\', '\0']);
    if bad {
        Err(RecordError::InvalidName {
            stream: stream.to_owned(),
        })
    } else {
        Ok(())
    }
}

/// The file name of part `suffix` (0 = first part, no suffix).
pub(crate) fn file_name(stream: &str, epoch: u64, suffix: u32) -> String {
    if suffix == 0 {
        format!("{stream}-{epoch}.flv")
    } else {
        format!("{stream}-{epoch}-{suffix}.flv")
    }
}

/// A newly created, exclusively owned recording file.
pub(crate) struct Claimed<F> {
    pub path: PathBuf,
    pub file_name: String,
    pub suffix: u32,
    pub file: F,
}

/// Creates the first free `NAME-EPOCH[-N].flv` in `dir` with `N >= first_suffix`.
///
/// `create` must create the file exclusively (fail with `AlreadyExists` if it exists); it is
/// never asked to open a name this process handed out before.
pub(crate) fn claim<F>(
    dir: &Path,
    stream: &str,
    epoch: u64,
    first_suffix: u32,
    create: impl Fn(&Path) -> io::Result<F>,
) -> Result<Claimed<F>, RecordError> {
    let mut issued = ISSUED.lock().unwrap_or_else(PoisonError::into_inner);
    let issued = issued.get_or_insert_with(HashMap::new);
    let now = Instant::now();
    issued.retain(|_, at| now.duration_since(*at) < FORGET_AFTER);
    let last = first_suffix.saturating_add(MAX_SUFFIXES);
    for suffix in first_suffix..last {
        let file_name = file_name(stream, epoch, suffix);
        let path = dir.join(&file_name);
        if issued.contains_key(&path) {
            continue;
        }
        match create(&path) {
            Ok(file) => {
                issued.insert(path.clone(), now);
                return Ok(Claimed {
                    path,
                    file_name,
                    suffix,
                    file,
                });
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(source) => return Err(RecordError::Create { path, source }),
        }
    }
    Err(RecordError::NamesExhausted {
        path: dir.join(file_name(stream, epoch, first_suffix)),
        tried: MAX_SUFFIXES,
    })
}

/// The stream name encoded in a recording file name, for files found at start-up:
/// `NAME-EPOCH.flv` and `NAME-EPOCH-N.flv` give `NAME`; anything else gives the name without
/// its extension.
pub(crate) fn stream_of(file_name: &str) -> String {
    let stem = file_name.strip_suffix(".flv").unwrap_or(file_name);
    let split_number = |s: &str| -> Option<(String, usize)> {
        let (head, tail) = s.rsplit_once('-')?;
        (!tail.is_empty() && tail.bytes().all(|b| b.is_ascii_digit()))
            .then(|| (head.to_owned(), tail.len()))
    };
    // An EPOCH has at least 9 digits (any date after 1973); a part suffix is shorter.
    const EPOCH_DIGITS: usize = 9;
    match split_number(stem) {
        Some((head, digits)) if digits < EPOCH_DIGITS => match split_number(&head) {
            Some((name, epoch_digits)) if epoch_digits >= EPOCH_DIGITS => name,
            _ => stem.to_owned(),
        },
        Some((name, _)) => name,
        None => stem.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_part_has_no_suffix_and_later_parts_count_up() {
        assert_eq!(file_name("cam", 1_700_000_000, 0), "cam-1700000000.flv");
        assert_eq!(file_name("cam", 1_700_000_000, 2), "cam-1700000000-2.flv");
    }

    #[test]
    fn names_that_would_escape_the_folder_are_rejected() {
        for bad in [
            "",
            "../etc",
            "a/b",
            "a\\b",
            ".hidden",
            "nul\0",
            &"x".repeat(201),
        ] {
            assert!(check_stream_name(bad).is_err(), "{bad:?} was accepted");
        }
        for good in ["cam", "cam-1", "Live_Event.2024", &"x".repeat(200)] {
            assert!(check_stream_name(good).is_ok(), "{good:?} was rejected");
        }
    }

    #[test]
    fn stream_names_are_read_back_from_file_names() {
        assert_eq!(stream_of("cam-1700000000.flv"), "cam");
        assert_eq!(stream_of("cam-1700000000-12.flv"), "cam");
        assert_eq!(stream_of("my-cam-2-1700000000-1.flv"), "my-cam-2");
        assert_eq!(stream_of("notes.txt"), "notes.txt");
        assert_eq!(stream_of("cam.flv"), "cam");
    }

    #[test]
    fn a_name_already_handed_out_is_skipped_even_when_its_file_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let create = |p: &Path| std::fs::File::create_new(p);
        let a = claim(dir.path(), "cam", 1_700_000_123, 0, create).unwrap();
        assert_eq!(a.file_name, "cam-1700000123.flv");
        // The first session's file moved on (to the spool) before the second one started.
        std::fs::remove_file(&a.path).unwrap();
        let b = claim(dir.path(), "cam", 1_700_000_123, 0, create).unwrap();
        assert_eq!(b.file_name, "cam-1700000123-1.flv");
        assert_eq!(b.suffix, 1);
    }

    #[test]
    fn an_existing_file_is_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cam-1700000456.flv"), b"precious").unwrap();
        let c = claim(dir.path(), "cam", 1_700_000_456, 0, |p: &Path| {
            std::fs::File::create_new(p)
        })
        .unwrap();
        assert_eq!(c.file_name, "cam-1700000456-1.flv");
        assert_eq!(
            std::fs::read(dir.path().join("cam-1700000456.flv")).unwrap(),
            b"precious"
        );
    }

    #[test]
    fn other_create_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("gone");
        let err = match claim(&missing, "cam", 1_700_000_789, 0, |p: &Path| {
            std::fs::File::create_new(p)
        }) {
            Err(e) => e,
            Ok(_) => panic!("creating in a missing folder succeeded"),
        };
        assert!(matches!(err, RecordError::Create { .. }), "{err}");
        assert!(err.to_string().contains("gone/cam-1700000789.flv"), "{err}");
    }
}
