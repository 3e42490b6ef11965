//! A durable queue in a local directory with SQS semantics, for `spherecast up`.
//!
//! Layout under the queue folder:
//! - `messages/<id>.json`: one file per message, replaced atomically (temporary file, fsync,
//!   rename, fsync of the folder) on every change, so a crash loses no acknowledged change;
//! - `dead-letter/`: the dead-letter queue, same layout;
//! - `corrupt/`: message files that could not be read, moved aside when the queue opens;
//! - `.lock`: held while a process has the queue open.
//!
//! All state lives in memory behind one lock and is written through to disk before it
//! changes in memory. Delivery scans messages in send order, which is fine for the hundreds
//! of jobs a single machine holds; it is not meant for millions.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::{
    MAX_BATCH, MAX_VISIBILITY, MAX_WAIT, Message, Queue, QueueDepth, QueueError, QueueSettings,
};

const MESSAGES_DIR: &str = "messages";
const DEAD_LETTER_DIR: &str = "dead-letter";
const CORRUPT_DIR: &str = "corrupt";
const LOCK_FILE: &str = ".lock";
const TEMP_PREFIX: &str = ".tmp-";

/// A durable queue in a local directory with SQS semantics, and its dead-letter queue.
///
/// Cheap to clone; clones share one queue. Opening the same folder again in the same process
/// returns the queue already open, and another process cannot open it at the same time.
///
/// Receipts: every receive hands out a new receipt. Deleting or changing the visibility with
/// an older receipt of a message fails with [`QueueError::InvalidReceipt`] and leaves the
/// message alone (stricter than SQS, which accepts such deletes). Deleting a message that is
/// already gone succeeds, as on SQS. Visibility is kept in milliseconds (SQS: seconds).
#[derive(Clone)]
pub struct EmbeddedQueue {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    messages_dir: PathBuf,
    settings: QueueSettings,
    state: Mutex<State>,
    /// Wakes long polls when a message may have become visible: a send, a visibility change.
    arrivals: Notify,
    /// `None` for a dead-letter queue itself.
    dead_letter: Option<EmbeddedQueue>,
    /// Holds the folder's lock file open (and locked) as long as the queue is open.
    _lock: Option<File>,
}

#[derive(Default)]
struct State {
    next_seq: u64,
    /// Delivery order: (sequence number, id).
    order: BTreeSet<(u64, String)>,
    records: HashMap<String, Record>,
}

/// One message as stored in `messages/<id>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    id: String,
    /// Position in delivery order, assigned on send and on arrival in the dead-letter queue.
    seq: u64,
    body: String,
    sent_at_ms: u64,
    receive_count: u32,
    /// Not delivered before this wall-clock time (ms since the Unix epoch). Wall clock rather
    /// than a monotonic clock so that it keeps its meaning across a restart.
    visible_at_ms: u64,
    /// Nonce of the latest receive; the receipt handed out is `<id>:<nonce>`.
    receipt: Option<String>,
}

/// What one look at the queue found.
struct Taken {
    messages: Vec<Message>,
    /// When nothing was visible: how long until the first in-flight message times out.
    next_visible_in: Option<Duration>,
}

/// Queues open in this process, by canonical folder, so that two parts of `spherecast up`
/// opening the same folder share one queue instead of overwriting each other's files.
static OPEN_QUEUES: Mutex<Vec<(PathBuf, Weak<Inner>)>> = Mutex::new(Vec::new());

impl EmbeddedQueue {
    /// Opens (creating if needed) the queue in `dir` and its dead-letter queue in
    /// `dir/dead-letter`. Messages in flight when the queue was last closed become visible when
    /// their visibility timeout ends. Unreadable message files are logged and moved to
    /// `dir/corrupt`.
    ///
    /// Blocking file-system work: call it at start-up, or from `spawn_blocking`.
    pub fn open(
        dir: impl Into<PathBuf>,
        settings: QueueSettings,
    ) -> Result<EmbeddedQueue, QueueError> {
        if settings.max_receive_count == 0 {
            return Err(QueueError::Rejected {
                op: "open",
                message: "max_receive_count must be at least 1 (3 or more is sensible)".to_owned(),
            });
        }
        let settings = QueueSettings {
            visibility_timeout: settings.visibility_timeout.min(MAX_VISIBILITY),
            ..settings
        };
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        let canonical = fs::canonicalize(&dir).map_err(|e| io_err(&dir, e))?;

        let mut open_queues = OPEN_QUEUES.lock().unwrap_or_else(PoisonError::into_inner);
        open_queues.retain(|(_, queue)| queue.strong_count() > 0);
        if let Some(inner) = open_queues
            .iter()
            .find(|(path, _)| *path == canonical)
            .and_then(|(_, q)| q.upgrade())
        {
            if inner.settings != settings {
                return Err(QueueError::Rejected {
                    op: "open",
                    message: format!(
                        "queue {} is already open in this process with {:?}, not {settings:?}",
                        dir.display(),
                        inner.settings
                    ),
                });
            }
            return Ok(EmbeddedQueue { inner });
        }

        let lock = lock_folder(&dir)?;
        let dead_letter =
            EmbeddedQueue::open_one(dir.join(DEAD_LETTER_DIR), settings.clone(), None, None)?;
        let queue = EmbeddedQueue::open_one(dir, settings, Some(dead_letter), Some(lock))?;
        open_queues.push((canonical, Arc::downgrade(&queue.inner)));
        Ok(queue)
    }

    fn open_one(
        dir: PathBuf,
        settings: QueueSettings,
        dead_letter: Option<EmbeddedQueue>,
        lock: Option<File>,
    ) -> Result<EmbeddedQueue, QueueError> {
        let messages_dir = dir.join(MESSAGES_DIR);
        fs::create_dir_all(&messages_dir).map_err(|e| io_err(&messages_dir, e))?;
        let mut state = State::default();
        let now = now_ms();
        let entries = fs::read_dir(&messages_dir).map_err(|e| io_err(&messages_dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_err(&messages_dir, e))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(TEMP_PREFIX) {
                // A write interrupted before its rename; the file it was replacing is intact.
                if let Err(err) = fs::remove_file(&path) {
                    warn!(path = %path.display(), error = %err, "Leftover temporary file not removed.");
                }
                continue;
            }
            let Some(id) = name.strip_suffix(".json") else {
                warn!(path = %path.display(), "Unexpected file in the queue folder; ignored.");
                continue;
            };
            match load_record(&path, id) {
                Ok(mut record) => {
                    // Nothing can be invisible for longer than SQS's maximum; a later time
                    // means the clock went back, and waiting for it would strand the message.
                    let latest = now.saturating_add(MAX_VISIBILITY.as_millis() as u64);
                    record.visible_at_ms = record.visible_at_ms.min(latest);
                    state.next_seq = state.next_seq.max(record.seq + 1);
                    state.insert(record);
                }
                Err(reason) => move_aside(&dir, &path, &name, &reason),
            }
        }
        debug!(dir = %dir.display(), messages = state.records.len(), "Queue opened.");
        Ok(EmbeddedQueue {
            inner: Arc::new(Inner {
                dir,
                messages_dir,
                settings,
                state: Mutex::new(state),
                arrivals: Notify::new(),
                dead_letter,
                _lock: lock,
            }),
        })
    }

    /// The dead-letter queue, where messages go after `max_receive_count` receives or
    /// [`Queue::dead_letter`]; `None` for a dead-letter queue itself.
    ///
    /// This inherent method shadows [`Queue::dead_letter`] in method calls on an
    /// `EmbeddedQueue`; call that one as `Queue::dead_letter(&queue, receipt, body, reason)`
    /// (or through `dyn Queue`).
    pub fn dead_letter(&self) -> Option<EmbeddedQueue> {
        self.inner.dead_letter.clone()
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    pub fn settings(&self) -> &QueueSettings {
        &self.inner.settings
    }

    /// Runs blocking file-system work off the async worker threads.
    async fn blocking<T, F>(&self, work: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, QueueError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        match tokio::task::spawn_blocking(move || work(&inner)).await {
            Ok(result) => result,
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            // Only happens while the runtime shuts down.
            Err(err) => Err(io_err(&self.inner.dir, io::Error::other(err))),
        }
    }
}

impl std::fmt::Debug for EmbeddedQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedQueue")
            .field("dir", &self.inner.dir)
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

impl State {
    fn insert(&mut self, record: Record) {
        self.order.insert((record.seq, record.id.clone()));
        self.records.insert(record.id.clone(), record);
    }

    fn remove(&mut self, id: &str) {
        if let Some(record) = self.records.remove(id) {
            self.order.remove(&(record.seq, record.id));
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // State changes only after the disk write succeeded, in single statements, so a panic
        // elsewhere while the lock was held cannot have left it half-updated.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn send(&self, body: String) -> Result<String, QueueError> {
        let mut state = self.lock();
        let now = now_ms();
        let record = Record {
            id: uuid::Uuid::new_v4().to_string(),
            seq: state.next_seq,
            body,
            sent_at_ms: now,
            receive_count: 0,
            visible_at_ms: now,
            receipt: None,
        };
        self.persist(&record)?;
        state.next_seq += 1;
        let id = record.id.clone();
        state.insert(record);
        Ok(id)
    }

    /// Takes a message redriven from the source queue: last in line, visible now, receive
    /// count kept (as SQS does).
    fn accept_dead_letter(&self, record: Record) -> Result<(), QueueError> {
        let mut state = self.lock();
        let record = Record {
            seq: state.next_seq,
            visible_at_ms: now_ms(),
            receipt: None,
            ..record
        };
        self.persist(&record)?;
        state.next_seq += 1;
        state.insert(record);
        Ok(())
    }

    fn take(&self, max: usize) -> Result<Taken, QueueError> {
        let now = now_ms();
        let mut state = self.lock();
        let mut deliver = Vec::new();
        let mut exhausted = Vec::new();
        let mut next_visible_at: Option<u64> = None;
        for (_, id) in &state.order {
            let record = &state.records[id];
            if record.visible_at_ms > now {
                next_visible_at = Some(
                    next_visible_at.map_or(record.visible_at_ms, |at| at.min(record.visible_at_ms)),
                );
                continue;
            }
            if self.dead_letter.is_some() && record.receive_count >= self.settings.max_receive_count
            {
                exhausted.push(id.clone());
                continue;
            }
            deliver.push(id.clone());
            if deliver.len() == max {
                break;
            }
        }

        if let Some(dead_letter) = &self.dead_letter {
            for id in &exhausted {
                let record = self.move_to_dead_letter(&mut state, &dead_letter.inner, id)?;
                warn!(queue = %self.dir.display(), %id, receive_count = record.receive_count, "Message moved to the dead-letter queue after too many receives.");
            }
            if !exhausted.is_empty() {
                dead_letter.inner.arrivals.notify_waiters();
            }
        }

        let mut messages = Vec::with_capacity(deliver.len());
        for id in deliver {
            let nonce = uuid::Uuid::new_v4().simple().to_string();
            let mut record = state.records[&id].clone();
            record.receive_count += 1;
            record.visible_at_ms =
                now.saturating_add(self.settings.visibility_timeout.as_millis() as u64);
            record.receipt = Some(nonce.clone());
            self.persist(&record)?;
            messages.push(Message {
                id: record.id.clone(),
                receipt: format!("{id}:{nonce}"),
                body: record.body.clone(),
                receive_count: record.receive_count,
            });
            state.records.insert(id, record);
        }
        let next_visible_in =
            next_visible_at.map(|at| Duration::from_millis(at.saturating_sub(now)));
        Ok(Taken {
            messages,
            next_visible_in,
        })
    }

    /// Moves the message `id` into `dead_letter` and returns it as it was here.
    fn move_to_dead_letter(
        &self,
        state: &mut State,
        dead_letter: &Inner,
        id: &str,
    ) -> Result<Record, QueueError> {
        let record = state.records[id].clone();
        // Into the dead-letter queue first: a crash in between duplicates the message rather
        // than losing it.
        dead_letter.accept_dead_letter(record.clone())?;
        self.remove_file(id)?;
        state.remove(id);
        Ok(record)
    }

    /// [`Queue::dead_letter`]: false when this is a dead-letter queue itself.
    fn dead_letter_now(&self, receipt: &str, reason: &str) -> Result<bool, QueueError> {
        let Some(dead_letter) = &self.dead_letter else {
            return Ok(false);
        };
        let (id, nonce) = parse_receipt(receipt)?;
        let mut state = self.lock();
        match state.records.get(id) {
            Some(record) if record.receipt.as_deref() == Some(nonce) => {}
            _ => return Err(QueueError::InvalidReceipt(receipt.to_owned())),
        }
        let record = self.move_to_dead_letter(&mut state, &dead_letter.inner, id)?;
        warn!(queue = %self.dir.display(), %id, receive_count = record.receive_count, %reason, "Message moved to the dead-letter queue; it can never succeed.");
        Ok(true)
    }

    fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        let (id, nonce) = parse_receipt(receipt)?;
        let mut state = self.lock();
        let Some(record) = state.records.get(id) else {
            debug!(queue = %self.dir.display(), %id, "Message already deleted.");
            return Ok(());
        };
        if record.receipt.as_deref() != Some(nonce) {
            return Err(QueueError::InvalidReceipt(receipt.to_owned()));
        }
        self.remove_file(id)?;
        state.remove(id);
        Ok(())
    }

    fn change_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), QueueError> {
        let (id, nonce) = parse_receipt(receipt)?;
        let mut state = self.lock();
        let Some(record) = state.records.get(id) else {
            return Err(QueueError::InvalidReceipt(receipt.to_owned()));
        };
        if record.receipt.as_deref() != Some(nonce) {
            return Err(QueueError::InvalidReceipt(receipt.to_owned()));
        }
        let mut record = record.clone();
        record.visible_at_ms =
            now_ms().saturating_add(timeout.min(MAX_VISIBILITY).as_millis() as u64);
        self.persist(&record)?;
        state.records.insert(record.id.clone(), record);
        Ok(())
    }

    fn depth(&self) -> QueueDepth {
        let now = now_ms();
        let state = self.lock();
        let visible = state
            .records
            .values()
            .filter(|record| record.visible_at_ms <= now)
            .count() as u64;
        QueueDepth {
            visible,
            in_flight: state.records.len() as u64 - visible,
            delayed: 0,
        }
    }

    fn message_path(&self, id: &str) -> PathBuf {
        self.messages_dir.join(format!("{id}.json"))
    }

    /// Writes the record's file atomically and durably.
    fn persist(&self, record: &Record) -> Result<(), QueueError> {
        let json = serde_json::to_vec(record).expect("a record always serialises");
        let temp = self
            .messages_dir
            .join(format!("{TEMP_PREFIX}{}", uuid::Uuid::new_v4()));
        let written = File::create_new(&temp).and_then(|mut file| {
            file.write_all(&json)?;
            file.sync_all()
        });
        if let Err(err) = written {
            let _ = fs::remove_file(&temp);
            return Err(io_err(&temp, err));
        }
        let path = self.message_path(&record.id);
        if let Err(err) = fs::rename(&temp, &path) {
            let _ = fs::remove_file(&temp);
            return Err(io_err(&path, err));
        }
        sync_dir(&self.messages_dir)
    }

    fn remove_file(&self, id: &str) -> Result<(), QueueError> {
        let path = self.message_path(id);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.messages_dir),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(io_err(&path, err)),
        }
    }
}

#[async_trait]
impl Queue for EmbeddedQueue {
    async fn send(&self, body: &str) -> Result<String, QueueError> {
        super::check_body_size(body)?;
        let body = body.to_owned();
        let id = self.blocking(move |inner| inner.send(body)).await?;
        self.inner.arrivals.notify_waiters();
        Ok(id)
    }

    async fn receive(&self, max: u32, wait: Duration) -> Result<Vec<Message>, QueueError> {
        let max = max.clamp(1, MAX_BATCH) as usize;
        let deadline = Instant::now() + wait.min(MAX_WAIT);
        loop {
            let arrival = self.inner.arrivals.notified();
            tokio::pin!(arrival);
            // Registered before looking, so that a send between the look and the wait still
            // wakes this poll.
            arrival.as_mut().enable();
            let taken = self.blocking(move |inner| inner.take(max)).await?;
            if !taken.messages.is_empty() {
                return Ok(taken.messages);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            // Also wake when the first in-flight message times out (plus a millisecond, as
            // visibility is kept in whole milliseconds of the wall clock).
            let wake = match taken.next_visible_in {
                Some(after) => deadline.min(now + after + Duration::from_millis(1)),
                None => deadline,
            };
            tokio::select! {
                () = &mut arrival => {}
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        let receipt = receipt.to_owned();
        self.blocking(move |inner| inner.delete(&receipt)).await
    }

    async fn change_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), QueueError> {
        let receipt = receipt.to_owned();
        self.blocking(move |inner| inner.change_visibility(&receipt, timeout))
            .await?;
        // Long polls may now have something to take, or an earlier time to look again.
        self.inner.arrivals.notify_waiters();
        Ok(())
    }

    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        self.blocking(|inner| Ok(inner.depth())).await
    }

    /// The stored message moves as it is (same id, body and receive count; `body` is not
    /// used) and is visible in the dead-letter queue at once. `reason` is logged, not stored.
    /// A receipt that is not the message's latest is an [`QueueError::InvalidReceipt`], as
    /// for [`Queue::delete`]; so is the receipt of a message already gone.
    async fn dead_letter(
        &self,
        receipt: &str,
        _body: &str,
        reason: &str,
    ) -> Result<bool, QueueError> {
        let (receipt, reason) = (receipt.to_owned(), reason.to_owned());
        let moved = self
            .blocking(move |inner| inner.dead_letter_now(&receipt, &reason))
            .await?;
        if let (true, Some(dead_letter)) = (moved, &self.inner.dead_letter) {
            dead_letter.inner.arrivals.notify_waiters();
        }
        Ok(moved)
    }
}

/// Splits `<id>:<nonce>`.
fn parse_receipt(receipt: &str) -> Result<(&str, &str), QueueError> {
    receipt
        .split_once(':')
        .filter(|(id, nonce)| !id.is_empty() && !nonce.is_empty())
        .ok_or_else(|| QueueError::InvalidReceipt(receipt.to_owned()))
}

fn load_record(path: &Path, id: &str) -> Result<Record, String> {
    let bytes = fs::read(path).map_err(|err| format!("unreadable: {err}"))?;
    let record: Record =
        serde_json::from_slice(&bytes).map_err(|err| format!("not a queue message: {err}"))?;
    if record.id != id {
        return Err(format!(
            "holds message {:?}, not {id:?} as its name says",
            record.id
        ));
    }
    Ok(record)
}

fn move_aside(dir: &Path, path: &Path, name: &str, reason: &str) {
    let corrupt_dir = dir.join(CORRUPT_DIR);
    let dest = corrupt_dir.join(format!("{name}.{}", now_ms()));
    match fs::create_dir_all(&corrupt_dir).and_then(|()| fs::rename(path, &dest)) {
        Ok(()) => {
            warn!(path = %path.display(), moved_to = %dest.display(), %reason, "Corrupt queue message moved aside.")
        }
        Err(err) => {
            warn!(path = %path.display(), %reason, error = %err, "Corrupt queue message skipped; moving it aside failed.")
        }
    }
}

/// Locks `dir/.lock` so that a second process cannot run the same queue.
fn lock_folder(dir: &Path) -> Result<File, QueueError> {
    let path = dir.join(LOCK_FILE);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| io_err(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(QueueError::Rejected {
            op: "open",
            message: format!(
                "queue {} is in use by another process; stop it or use another data folder",
                dir.display()
            ),
        }),
        Err(fs::TryLockError::Error(err)) => Err(io_err(&path, err)),
    }
}

fn sync_dir(dir: &Path) -> Result<(), QueueError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

fn io_err(path: &Path, source: io::Error) -> QueueError {
    QueueError::Io {
        path: path.to_owned(),
        source,
    }
}
