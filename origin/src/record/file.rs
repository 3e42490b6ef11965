//! The file a recording part is written to, behind a small trait so tests can make the disk
//! fail on cue.

use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::Path;

/// What a recorder needs from its output file.
pub(crate) trait RecordFile: Write + Seek + Send + Sync + Debug {
    /// Cuts the file to `len` bytes.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// Flushes the file's data and metadata to the disk.
    fn sync_all(&mut self) -> io::Result<()>;
}

impl RecordFile for File {
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }

    fn sync_all(&mut self) -> io::Result<()> {
        File::sync_all(self)
    }
}

/// Opens a new recording file; must fail with `AlreadyExists` when the path exists.
pub(crate) type CreateFn = dyn Fn(&Path) -> io::Result<Box<dyn RecordFile>> + Send + Sync;

/// The production [`CreateFn`]: a new file, created exclusively.
pub(crate) fn create_new(path: &Path) -> io::Result<Box<dyn RecordFile>> {
    let file = OpenOptions::new().write(true).create_new(true).open(path)?;
    Ok(Box::new(file))
}

/// Wraps a record file and counts the bytes the operating system accepted, which is the file's
/// length as long as everything is appended. After a write error this says exactly how much
/// of what was handed to the buffered writer reached the file.
#[derive(Debug)]
pub(crate) struct Counted {
    inner: Box<dyn RecordFile>,
    accepted: u64,
}

impl Counted {
    pub(crate) fn new(inner: Box<dyn RecordFile>) -> Self {
        Self { inner, accepted: 0 }
    }

    /// Bytes appended to the file so far.
    pub(crate) fn accepted(&self) -> u64 {
        self.accepted
    }

    /// Overwrites the 8-byte big-endian double at `offset` (a metadata value), leaving the
    /// position at the end of the file.
    pub(crate) fn patch_f64(&mut self, offset: u64, value: f64) -> io::Result<()> {
        self.inner.seek(SeekFrom::Start(offset))?;
        self.inner.write_all(&value.to_be_bytes())?;
        self.inner.seek(SeekFrom::End(0))?;
        Ok(())
    }

    /// Cuts the file to `len` bytes (at most what was accepted).
    pub(crate) fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)?;
        self.inner.seek(SeekFrom::Start(len))?;
        self.accepted = len;
        Ok(())
    }

    pub(crate) fn sync_all(&mut self) -> io::Result<()> {
        self.inner.sync_all()
    }
}

impl Write for Counted {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.accepted += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
pub(crate) mod failing {
    //! A record file on a disk that fills up after a byte budget, like ENOSPC mid-recording.

    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    /// Accepts appends until the shared budget is spent (writing the part that still fits, as
    /// a real disk does), then fails with ENOSPC. Overwrites, seeks, truncation and sync still
    /// work.
    #[derive(Debug)]
    pub(crate) struct FillingDisk {
        pub file: File,
        pub budget: Arc<AtomicU64>,
    }

    /// ENOSPC on Linux.
    const ENOSPC: i32 = 28;

    impl Write for FillingDisk {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            // Overwriting bytes that exist (patching metadata) needs no new space.
            let pos = self.file.stream_position()?;
            if pos + buf.len() as u64 <= self.file.metadata()?.len() {
                return self.file.write(buf);
            }
            let left = self.budget.load(Ordering::SeqCst);
            if left == 0 && !buf.is_empty() {
                return Err(io::Error::from_raw_os_error(ENOSPC));
            }
            let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = self.file.write(&buf[..n])?;
            self.budget.fetch_sub(n as u64, Ordering::SeqCst);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            self.file.flush()
        }
    }

    impl Seek for FillingDisk {
        fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
            self.file.seek(pos)
        }
    }

    impl RecordFile for FillingDisk {
        fn set_len(&mut self, len: u64) -> io::Result<()> {
            self.file.set_len(len)
        }

        fn sync_all(&mut self) -> io::Result<()> {
            self.file.sync_all()
        }
    }

    /// A [`CreateFn`] whose files share one budget of `bytes`.
    pub(crate) fn disk_with_room_for(bytes: u64) -> Box<CreateFn> {
        let budget = Arc::new(AtomicU64::new(bytes));
        Box::new(move |path: &Path| {
            let file = OpenOptions::new().write(true).create_new(true).open(path)?;
            Ok(Box::new(FillingDisk {
                file,
                budget: budget.clone(),
            }) as Box<dyn RecordFile>)
        })
    }
}
