//! Open shells and their commands. Commands run as tokio tasks; Receive waits on a watch channel.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::ps::ScriptOutput;

/// Locks a mutex, recovering from poisoning (a panicking task must not wedge the endpoint).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One command of a shell.
pub(crate) struct CommandEntry {
    /// Command id.
    pub(crate) id: String,
    result: watch::Sender<Option<Arc<ScriptOutput>>>,
    task: Mutex<Option<JoinHandle<()>>>,
    /// Bytes of stdout / stderr already sent.
    sent: Mutex<(usize, usize)>,
    /// TimedOut faults still to inject before real output.
    pub(crate) timed_out_left: AtomicU32,
}

/// What a Receive returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Received {
    /// Still running after the wait.
    TimedOut,
    /// Output; `done` with the exit code when everything was delivered.
    Output {
        stdout: Vec<u8>,
        stderr: Vec<u8>,
        done: Option<i32>,
    },
}

impl CommandEntry {
    pub(crate) fn new(id: String, timed_out: u32) -> Arc<Self> {
        let (tx, _rx) = watch::channel(None);
        Arc::new(CommandEntry {
            id,
            result: tx,
            task: Mutex::new(None),
            sent: Mutex::new((0, 0)),
            timed_out_left: AtomicU32::new(timed_out),
        })
    }

    /// Publishes the result.
    pub(crate) fn finish(&self, out: ScriptOutput) {
        self.result.send_replace(Some(Arc::new(out)));
    }

    /// Remembers the task running the command (to abort it on terminate).
    pub(crate) fn set_task(&self, h: JoinHandle<()>) {
        *lock(&self.task) = Some(h);
    }

    /// Stops the command; a result not yet produced becomes `exit_code`.
    pub(crate) fn abort(&self, exit_code: i32) {
        if let Some(h) = lock(&self.task).take() {
            h.abort();
        }
        if self.result.borrow().is_none() {
            self.finish(ScriptOutput {
                exit_code,
                ..ScriptOutput::default()
            });
        }
    }

    /// Takes the next chunk, waiting up to `wait` for the command to finish.
    pub(crate) async fn receive(&self, wait: Duration, chunk: usize) -> Received {
        if self.timed_out_left.load(Ordering::SeqCst) > 0 {
            let prev = self
                .timed_out_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
            if prev.is_ok() {
                return Received::TimedOut;
            }
        }
        let mut rx = self.result.subscribe();
        let out = match tokio::time::timeout(wait, rx.wait_for(Option::is_some)).await {
            Ok(Ok(v)) => v.clone(),
            _ => None,
        };
        let Some(out) = out else {
            return Received::TimedOut;
        };
        let mut sent = lock(&self.sent);
        let (so, se) = *sent;
        let out_bytes = out.stdout.as_bytes();
        let err_bytes = out.stderr.as_bytes();
        let take_out = out_bytes.len().saturating_sub(so).min(chunk);
        let stdout = out_bytes[so..so + take_out].to_vec();
        let room = chunk - take_out;
        let take_err = err_bytes.len().saturating_sub(se).min(room);
        let stderr = err_bytes[se..se + take_err].to_vec();
        *sent = (so + take_out, se + take_err);
        let done =
            (sent.0 == out_bytes.len() && sent.1 == err_bytes.len()).then_some(out.exit_code);
        Received::Output {
            stdout,
            stderr,
            done,
        }
    }
}

/// One shell.
#[derive(Default)]
pub(crate) struct ShellEntry {
    pub(crate) commands: Mutex<HashMap<String, Arc<CommandEntry>>>,
}

impl ShellEntry {
    /// Aborts every command; returns how many there were.
    pub(crate) fn close(&self) -> usize {
        let cmds: Vec<_> = lock(&self.commands).drain().map(|(_, c)| c).collect();
        for c in &cmds {
            c.abort(-1);
        }
        cmds.len()
    }
}

/// All open shells of one endpoint.
#[derive(Default)]
pub(crate) struct Shells {
    map: Mutex<HashMap<String, Arc<ShellEntry>>>,
}

impl Shells {
    /// Opens a shell; `None` when `max` shells are open already.
    pub(crate) fn open(&self, max: usize) -> Option<String> {
        let mut map = lock(&self.map);
        if map.len() >= max {
            return None;
        }
        let id = uuid::Uuid::new_v4().to_string().to_uppercase();
        map.insert(id.clone(), Arc::new(ShellEntry::default()));
        Some(id)
    }

    /// Finds a shell (ShellIds compare case-insensitively, as on Windows).
    pub(crate) fn get(&self, id: &str) -> Option<Arc<ShellEntry>> {
        lock(&self.map).get(&id.to_uppercase()).cloned()
    }

    /// Removes a shell.
    pub(crate) fn remove(&self, id: &str) -> Option<Arc<ShellEntry>> {
        lock(&self.map).remove(&id.to_uppercase())
    }
}

impl Drop for Shells {
    fn drop(&mut self) {
        for (_, s) in lock(&self.map).drain() {
            s.close();
        }
    }
}
