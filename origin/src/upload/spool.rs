//! The upload spool: a folder of finished recordings waiting to be uploaded. The file name is
//! the object key below the upload prefix, so the spool needs no index and survives restarts
//! as it is.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::Notify;
use tracing::{error, warn};

use super::UploadError;
use crate::record::FinishedRecording;

/// Name prefix of copies in progress (across file systems); never listed, removed at open.
const PARTIAL_PREFIX: &str = ".partial-";

/// A folder of recordings waiting for upload, shared by the sessions that submit and the
/// [`super::Uploader`] that empties it. Cloning gives another handle to the same spool.
///
/// Invariants: every listed file is a complete recording (files only arrive by an atomic
/// link or rename, copies are finished under a hidden name first); nothing in the spool is
/// ever overwritten (a name clash gets a `~N` suffix); a file leaves only once uploaded.
#[derive(Debug, Clone)]
pub struct Spool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    /// Wakes the uploader; a wake-up while it is busy is kept for its next wait.
    submitted: Notify,
}

impl Spool {
    /// Opens (creating if needed) the spool folder `dir`, normally `DATA/spool`: on the same
    /// file system as the recording folder, so that submitting is a rename. Removes copies a
    /// crash interrupted (their source is still in the recording folder).
    pub fn open(dir: &Path) -> Result<Spool, UploadError> {
        let open_err = |source| UploadError::Open {
            dir: dir.to_owned(),
            source,
        };
        fs::create_dir_all(dir).map_err(open_err)?;
        for entry in fs::read_dir(dir).map_err(open_err)? {
            let entry = entry.map_err(open_err)?;
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(PARTIAL_PREFIX)
                && let Err(e) = fs::remove_file(entry.path())
            {
                warn!(file = %entry.path().display(), error = %e, "Cannot remove an interrupted copy from the upload spool.");
            }
        }
        Ok(Spool {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                submitted: Notify::new(),
            }),
        })
    }

    /// The spool folder.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Moves a finished recording into the spool and wakes the uploader.
    ///
    /// The move is atomic and never overwrites: a hard link then removal of the original
    /// (a rename where the file system has no hard links), with both folders synced so a
    /// power loss cannot lose the file; across file systems a copy is written under a hidden
    /// name, synced, then linked in. If a different file already has the name, the recording
    /// is spooled as `NAME~N.flv` instead. Submitting a file that is already in the spool
    /// (a crash came between link and removal) just removes the original.
    ///
    /// Blocking file-system work; only a copy across file systems takes long.
    pub fn submit(&self, rec: &FinishedRecording) -> Result<(), UploadError> {
        let name = &rec.file_name;
        if name.is_empty() || name.starts_with('.') || name.contains(['/', '\\', '\0']) {
            return Err(UploadError::InvalidName {
                file: rec.path.clone(),
                file_name: name.clone(),
            });
        }
        let submit_err = |source| UploadError::Submit {
            file: rec.path.clone(),
            dir: self.dir().to_owned(),
            source,
        };
        let placed = place(&rec.path, self.dir(), name).map_err(submit_err)?;
        if placed.file_name() != Some(name.as_ref()) {
            warn!(
                file = %rec.path.display(), spooled_as = %placed.display(),
                "A different recording with this name is already waiting in the upload spool; spooled under a new name."
            );
        }
        self.inner.submitted.notify_one();
        Ok(())
    }

    /// Recordings waiting for upload, oldest first (by modification time, then name). An
    /// unreadable folder is logged and gives an empty list.
    pub fn pending(&self) -> Vec<PathBuf> {
        self.list().unwrap_or_else(|e| {
            error!(dir = %self.dir().display(), error = %e, "Cannot list the upload spool.");
            Vec::new()
        })
    }

    pub(crate) fn list(&self) -> io::Result<Vec<PathBuf>> {
        let mut files: Vec<(SystemTime, PathBuf)> = Vec::new();
        for entry in fs::read_dir(self.dir())? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_file() {
                files.push((
                    meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    entry.path(),
                ));
            }
        }
        files.sort();
        Ok(files.into_iter().map(|(_, path)| path).collect())
    }

    /// Completes at the next submission (at once if one came since the last wait).
    pub(crate) async fn submitted(&self) {
        self.inner.submitted.notified().await;
    }
}

/// Puts `src` into `dir` as `name` (or `name~N`), never overwriting; returns where it went.
fn place(src: &Path, dir: &Path, name: &str) -> io::Result<PathBuf> {
    for n in 0u32.. {
        let dest = dir.join(alternative(name, n));
        match fs::hard_link(src, &dest) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if same_recording(src, &dest)? {
                    remove_original(src)?;
                    return Ok(dest);
                }
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::CrossesDevices => return copy_in(src, dir, name),
            Err(e) if links_unsupported(&e) => {
                if dest.symlink_metadata().is_ok() {
                    if same_recording(src, &dest)? {
                        remove_original(src)?;
                        return Ok(dest);
                    }
                    continue;
                }
                fs::rename(src, &dest)?;
                sync_dir(dir)?;
                sync_parent(src);
                return Ok(dest);
            }
            Err(e) => return Err(e),
        }
        // The link must be on disk before the original goes, or a power loss could lose both.
        sync_dir(dir)?;
        remove_original(src)?;
        return Ok(dest);
    }
    Err(io::Error::other(format!(
        "no free name for {name} in the upload spool"
    )))
}

/// `name` for `n == 0`, else `stem~n.ext`.
fn alternative(name: &str, n: u32) -> String {
    if n == 0 {
        return name.to_owned();
    }
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => format!("{stem}~{n}.{ext}"),
        _ => format!("{name}~{n}"),
    }
}

fn links_unsupported(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::Unsupported | io::ErrorKind::PermissionDenied
    )
}

/// Copies `src` across file systems: written and synced under a hidden name, then linked in
/// like a local file (so the copy appears whole or not at all), then the original removed.
fn copy_in(src: &Path, dir: &Path, name: &str) -> io::Result<PathBuf> {
    let temp = dir.join(format!("{PARTIAL_PREFIX}{name}"));
    let copied = (|| {
        let mut input = File::open(src)?;
        let mut output = File::create(&temp)?;
        io::copy(&mut input, &mut output)?;
        // Keep the age order: the spool sorts by modification time.
        output.set_modified(input.metadata()?.modified()?)?;
        output.sync_all()
    })();
    if let Err(e) = copied {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    let placed = place(&temp, dir, name);
    if placed.is_err() {
        let _ = fs::remove_file(&temp);
    }
    let placed = placed?;
    remove_original(src)?;
    Ok(placed)
}

/// True when `dest` is `src` (a second link to it) or holds the same bytes (a finished copy).
fn same_recording(src: &Path, dest: &Path) -> io::Result<bool> {
    let (a, b) = (fs::metadata(src)?, fs::metadata(dest)?);
    if a.dev() == b.dev() && a.ino() == b.ino() {
        return Ok(true);
    }
    if a.len() != b.len() {
        return Ok(false);
    }
    let (mut x, mut y) = (File::open(src)?, File::open(dest)?);
    let (mut bx, mut by) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let n = read_full(&mut x, &mut bx)?;
        if n != read_full(&mut y, &mut by)? || bx[..n] != by[..n] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

fn remove_original(src: &Path) -> io::Result<()> {
    fs::remove_file(src)?;
    sync_parent(src);
    Ok(())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Makes the removal from the recording folder durable; a failure only means the file may
/// reappear after a power loss, be recovered and uploaded twice (harmless), so it is logged.
fn sync_parent(path: &Path) {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && let Err(e) = sync_dir(parent)
    {
        warn!(dir = %parent.display(), error = %e, "Cannot sync the recording folder.");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn recording(dir: &Path, name: &str, bytes: &[u8]) -> FinishedRecording {
        let path = dir.join(name);
        fs::write(&path, bytes).unwrap();
        FinishedRecording {
            path,
            file_name: name.to_owned(),
            stream: "cam".to_owned(),
            duration: Duration::from_secs(1),
            size: bytes.len() as u64,
        }
    }

    fn setup() -> (tempfile::TempDir, PathBuf, Spool) {
        let data = tempfile::tempdir().unwrap();
        let recordings = data.path().join("recordings");
        fs::create_dir(&recordings).unwrap();
        let spool = Spool::open(&data.path().join("spool")).unwrap();
        (data, recordings, spool)
    }

    #[test]
    fn submit_moves_the_file_and_keeps_its_name() {
        let (_data, recordings, spool) = setup();
        let rec = recording(&recordings, "cam-1700000000.flv", b"flv bytes");

        spool.submit(&rec).unwrap();

        assert!(!rec.path.exists());
        assert_eq!(
            spool.pending(),
            vec![spool.dir().join("cam-1700000000.flv")]
        );
        assert_eq!(
            fs::read(spool.dir().join("cam-1700000000.flv")).unwrap(),
            b"flv bytes"
        );
    }

    #[test]
    fn a_different_file_with_the_same_name_is_never_overwritten() {
        let (_data, recordings, spool) = setup();
        fs::write(spool.dir().join("cam-1700000000.flv"), b"first session").unwrap();
        let rec = recording(&recordings, "cam-1700000000.flv", b"second session");

        spool.submit(&rec).unwrap();

        assert_eq!(
            fs::read(spool.dir().join("cam-1700000000.flv")).unwrap(),
            b"first session"
        );
        assert_eq!(
            fs::read(spool.dir().join("cam-1700000000~1.flv")).unwrap(),
            b"second session"
        );
        assert!(!rec.path.exists());
    }

    #[test]
    fn resubmitting_a_file_already_linked_into_the_spool_only_removes_the_original() {
        let (_data, recordings, spool) = setup();
        let rec = recording(&recordings, "cam-1700000000.flv", b"flv bytes");
        // A crash between the link and the removal of the original.
        fs::hard_link(&rec.path, spool.dir().join("cam-1700000000.flv")).unwrap();

        spool.submit(&rec).unwrap();

        assert!(!rec.path.exists());
        assert_eq!(spool.pending().len(), 1);
    }

    #[test]
    fn a_copy_across_file_systems_appears_whole_and_keeps_its_age() {
        let (_data, recordings, spool) = setup();
        let rec = recording(&recordings, "cam-1700000000.flv", &[7u8; 300_000]);
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
        File::options()
            .write(true)
            .open(&rec.path)
            .unwrap()
            .set_modified(old)
            .unwrap();

        let placed = copy_in(&rec.path, spool.dir(), &rec.file_name).unwrap();

        assert_eq!(placed, spool.dir().join("cam-1700000000.flv"));
        assert!(!rec.path.exists());
        assert_eq!(fs::read(&placed).unwrap(), vec![7u8; 300_000]);
        assert_eq!(fs::metadata(&placed).unwrap().modified().unwrap(), old);
        assert_eq!(
            fs::read_dir(spool.dir()).unwrap().count(),
            1,
            "no temporary copy left"
        );
    }

    #[test]
    fn pending_lists_oldest_first_and_skips_hidden_files() {
        let (_data, _recordings, spool) = setup();
        let at = |secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        for (name, secs) in [
            ("b.flv", 1_700_000_300),
            ("a.flv", 1_700_000_200),
            ("c.flv", 1_700_000_100),
        ] {
            let path = spool.dir().join(name);
            fs::write(&path, name).unwrap();
            File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(at(secs))
                .unwrap();
        }
        fs::write(spool.dir().join(".partial-d.flv"), b"half").unwrap();

        let names: Vec<String> = spool
            .pending()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();

        assert_eq!(names, ["c.flv", "a.flv", "b.flv"]);
    }

    #[test]
    fn open_removes_copies_a_crash_interrupted() {
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().join("spool");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join(".partial-cam.flv"), b"half").unwrap();
        fs::write(dir.join("cam.flv"), b"whole").unwrap();

        let spool = Spool::open(&dir).unwrap();

        assert!(!dir.join(".partial-cam.flv").exists());
        assert_eq!(spool.pending(), vec![dir.join("cam.flv")]);
    }

    #[test]
    fn a_missing_recording_is_an_error_naming_it() {
        let (_data, recordings, spool) = setup();
        let mut rec = recording(&recordings, "cam.flv", b"x");
        fs::remove_file(&rec.path).unwrap();
        rec.file_name = "cam.flv".into();

        let err = spool.submit(&rec).unwrap_err();

        assert!(matches!(err, UploadError::Submit { .. }), "{err}");
        assert!(
            err.to_string().contains(&rec.path.display().to_string()),
            "{err}"
        );
        assert!(spool.pending().is_empty());
    }

    #[test]
    fn a_file_name_that_is_a_path_is_refused() {
        let (_data, recordings, spool) = setup();
        let mut rec = recording(&recordings, "cam.flv", b"x");
        rec.file_name = "../cam.flv".into();
        assert!(matches!(
            spool.submit(&rec),
            Err(UploadError::InvalidName { .. })
        ));
        assert!(rec.path.exists());
    }
}
