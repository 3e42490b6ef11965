//! Start-up repair of recordings a crash (or power loss) left in the recording folder.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use tracing::{error, info, warn};

use super::FinishedRecording;
use super::names;
use super::scan::{self, Scan, ScanError};

/// Repairs every file left in the recording folder `dir` and returns the usable ones, in file
/// name order, for upload.
///
/// Call it at start-up, before any [`super::Recorder`] writes to `dir`. For each file:
/// - an FLV file is cut at its last complete tag, its `duration` and `filesize` metadata are
///   rewritten, and it is synced to disk; if it holds no frame at all it is removed;
/// - bytes that cannot be parsed are never deleted: a file that is not FLV is moved to
///   `dir/../quarantine/`, and a non-zero tail of garbage after valid tags is copied there
///   (as `NAME.flv.tail-OFFSET`) before the file is cut;
/// - a file that cannot be read or written is left where it is (and logged) for the next start.
///
/// A missing `dir` gives an empty list.
pub fn recover(dir: &Path) -> Vec<FinishedRecording> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            error!(dir = %dir.display(), error = %e, "Cannot list the recording folder; leftover recordings wait for the next start.");
            return Vec::new();
        }
    };
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                error!(dir = %dir.display(), error = %e, "Cannot list the recording folder completely.");
                continue;
            }
        };
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        match entry.file_name().into_string() {
            Ok(name) => files.push((name, entry.path())),
            Err(name) => quarantine_file(
                dir,
                &entry.path(),
                &name.to_string_lossy(),
                "its name is not UTF-8",
            ),
        }
    }
    files.sort();

    let mut recovered = Vec::new();
    for (file_name, path) in files {
        match repair(dir, &path, &file_name) {
            Ok(Repair::Usable(rec)) => {
                info!(file = %path.display(), bytes = rec.size, duration = ?rec.duration, "Repaired a recording left by an earlier run.");
                recovered.push(rec);
            }
            Ok(Repair::Empty) => match fs::remove_file(&path) {
                Ok(()) => {
                    info!(file = %path.display(), "Removed a recording left by an earlier run with no frames in it.")
                }
                Err(e) => {
                    warn!(file = %path.display(), error = %e, "Cannot remove an empty leftover recording.")
                }
            },
            Ok(Repair::Unreadable(why)) => quarantine_file(dir, &path, &file_name, &why),
            Err(e) => error!(
                file = %path.display(), error = %e,
                "Cannot repair a leftover recording; it stays in the recording folder for the next start. Check the disk and permissions."
            ),
        }
    }
    recovered
}

enum Repair {
    Usable(FinishedRecording),
    /// Valid FLV without a single frame: nothing worth keeping.
    Empty,
    /// Not FLV (the reason), to be quarantined whole.
    Unreadable(String),
}

fn repair(dir: &Path, path: &Path, file_name: &str) -> io::Result<Repair> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    let scan = match scan::scan(&mut file) {
        Ok(scan) => scan,
        Err(ScanError::NotFlv(e)) => return Ok(Repair::Unreadable(e.to_string())),
        Err(ScanError::Io(e)) => return Err(e),
    };
    let garbage_tail = match &scan.garbage {
        Some(e) if !is_zeros(&mut file, scan.valid_len)? => Some(e.to_string()),
        _ => None,
    };
    if !scan.timeline.has_frames() {
        return Ok(match garbage_tail {
            Some(why) => Repair::Unreadable(why),
            None => Repair::Empty,
        });
    }
    if scan.valid_len < scan.file_len {
        if let Some(why) = garbage_tail {
            let kept = keep_tail(dir, &mut file, file_name, scan.valid_len)?;
            warn!(
                file = %path.display(), offset = scan.valid_len, error = %why, kept = %kept.display(),
                "A leftover recording has bytes that are not FLV after its last valid tag; they were moved to the quarantine folder."
            );
        }
        file.set_len(scan.valid_len)?;
    }
    patch(&mut file, &scan)?;
    file.sync_all()?;
    Ok(Repair::Usable(FinishedRecording {
        path: path.to_owned(),
        file_name: file_name.to_owned(),
        stream: names::stream_of(file_name),
        duration: scan.timeline.duration(),
        size: scan.valid_len,
    }))
}

/// Rewrites `duration` and `filesize`, where the metadata has them within the valid prefix.
fn patch(file: &mut File, scan: &Scan) -> io::Result<()> {
    let values = [
        (scan.duration_at, scan.timeline.duration().as_secs_f64()),
        (scan.filesize_at, scan.valid_len as f64),
    ];
    for (at, value) in values {
        if let Some(at) = at.filter(|at| at + 8 <= scan.valid_len) {
            file.seek(SeekFrom::Start(at))?;
            file.write_all(&value.to_be_bytes())?;
        }
    }
    Ok(())
}

/// True when everything from `from` to the end of the file is zero bytes (what a file system
/// may leave in blocks allocated but not written before a power loss).
fn is_zeros(file: &mut File, from: u64) -> io::Result<bool> {
    file.seek(SeekFrom::Start(from))?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(true);
        }
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
    }
}

/// Copies the bytes from `from` to the end into the quarantine folder; returns the copy's path.
fn keep_tail(dir: &Path, file: &mut File, file_name: &str, from: u64) -> io::Result<PathBuf> {
    let quarantine = quarantine_dir(dir);
    fs::create_dir_all(&quarantine)?;
    let (dest, mut out) = create_free(&quarantine, &format!("{file_name}.tail-{from}"))?;
    file.seek(SeekFrom::Start(from))?;
    io::copy(file, &mut out)?;
    out.sync_all()?;
    Ok(dest)
}

/// `dir/../quarantine`: next to the recording folder, outside it.
fn quarantine_dir(dir: &Path) -> PathBuf {
    match dir.parent() {
        Some(parent) => parent.join("quarantine"),
        None => dir.join("quarantine"),
    }
}

/// Moves a file that is not FLV out of the recording folder without deleting anything.
fn quarantine_file(dir: &Path, path: &Path, file_name: &str, why: &str) {
    let quarantine = quarantine_dir(dir);
    let moved = fs::create_dir_all(&quarantine).and_then(|()| {
        let dest = free_path(&quarantine, file_name);
        fs::rename(path, &dest).map(|()| dest)
    });
    match moved {
        Ok(dest) => warn!(
            file = %path.display(), reason = why, moved_to = %dest.display(),
            "A file in the recording folder is not a readable FLV recording; moved it to the quarantine folder for inspection."
        ),
        Err(e) => error!(
            file = %path.display(), reason = why, error = %e,
            "A file in the recording folder is not a readable FLV recording and could not be moved to the quarantine folder; it stays where it is."
        ),
    }
}

/// `dir/name`, or `dir/name.1`, `dir/name.2`, ... whichever does not exist yet.
fn free_path(dir: &Path, name: &str) -> PathBuf {
    let mut candidate = dir.join(name);
    let mut n = 0u32;
    while candidate.symlink_metadata().is_ok() {
        n += 1;
        candidate = dir.join(format!("{name}.{n}"));
    }
    candidate
}

/// Creates `dir/name` (or the next free `name.N`) exclusively.
fn create_free(dir: &Path, name: &str) -> io::Result<(PathBuf, File)> {
    loop {
        let path = free_path(dir, name);
        match File::create_new(&path) {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}
