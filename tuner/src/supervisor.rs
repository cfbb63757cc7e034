//! The supervisor side of tuning: worker processes started on demand, one request at a time
//! each, with a timeout per request. A worker that crashes, hangs or answers garbage is killed
//! and replaced on the next request; the request that broke it becomes a failed result.

use crate::worker::{Reply, Request};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::Duration;

/// How to start a worker: a program and its arguments (the CLI starts itself with `worker`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSpec {
    pub program: PathBuf,
    pub args: Vec<String>,
}

/// Why a request got no reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkerFailure {
    #[error("worker could not be started: {0}")]
    Spawn(String),
    #[error("worker crashed ({0})")]
    Crashed(String),
    #[error("no reply within {0:?} (worker killed)")]
    Timeout(Duration),
    #[error("worker answered garbage: {0}")]
    Protocol(String),
}

struct Running {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

/// One worker slot: a live process, or none until the next request.
pub struct Worker {
    spec: WorkerSpec,
    running: Option<Running>,
    /// Processes started so far (restarts = starts − 1).
    pub starts: u32,
}

impl Worker {
    pub fn new(spec: WorkerSpec) -> Worker {
        Worker {
            spec,
            running: None,
            starts: 0,
        }
    }

    fn start(&mut self) -> Result<&mut Running, WorkerFailure> {
        if self.running.is_none() {
            let mut child = Command::new(&self.spec.program)
                .args(&self.spec.args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|e| {
                    WorkerFailure::Spawn(format!("{}: {e}", self.spec.program.display()))
                })?;
            let stdin = child
                .stdin
                .take()
                .ok_or_else(|| WorkerFailure::Spawn("no stdin".into()))?;
            let stdout = child
                .stdout
                .take()
                .ok_or_else(|| WorkerFailure::Spawn("no stdout".into()))?;
            let (tx, lines) = channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            self.starts += 1;
            self.running = Some(Running {
                child,
                stdin,
                lines,
            });
        }
        self.running
            .as_mut()
            .ok_or_else(|| WorkerFailure::Spawn("worker vanished".into()))
    }

    /// Kill the current process (if any); the next request starts a fresh one.
    pub fn kill(&mut self) -> Option<String> {
        let mut r = self.running.take()?;
        let _ = r.child.kill();
        r.child.wait().ok().map(|s| s.to_string())
    }

    /// Send one request and wait up to `timeout` for its reply.
    pub fn call(&mut self, req: &Request, timeout: Duration) -> Result<Reply, WorkerFailure> {
        let text =
            serde_json::to_string(req).map_err(|e| WorkerFailure::Protocol(e.to_string()))?;
        let r = self.start()?;
        if writeln!(r.stdin, "{text}")
            .and_then(|_| r.stdin.flush())
            .is_err()
        {
            let status = self.kill().unwrap_or_default();
            return Err(WorkerFailure::Crashed(status));
        }
        match r.lines.recv_timeout(timeout) {
            Ok(line) => match serde_json::from_str::<Reply>(&line) {
                Ok(reply) => {
                    if reply.fatal {
                        self.kill();
                    }
                    Ok(reply)
                }
                Err(e) => {
                    self.kill();
                    Err(WorkerFailure::Protocol(format!("{e}: {line}")))
                }
            },
            Err(RecvTimeoutError::Timeout) => {
                self.kill();
                Err(WorkerFailure::Timeout(timeout))
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.kill().unwrap_or_else(|| "exited".into());
                Err(WorkerFailure::Crashed(status))
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(mut r) = self.running.take() {
            drop(r.stdin);
            // Closing stdin ends a healthy worker; give it a moment, then make sure.
            for _ in 0..50 {
                if let Ok(Some(_)) = r.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = r.child.kill();
            let _ = r.child.wait();
        }
    }
}

/// Run `requests` on up to `jobs` worker processes at once (one request per worker at a time,
/// workers reused and restarted as needed); replies in request order. `done` is called after
/// each request, from the worker threads (progress bars).
pub fn call_all(
    spec: &WorkerSpec,
    jobs: usize,
    requests: &[Request],
    timeout: Duration,
    done: impl Fn() + Sync,
) -> Vec<Result<Reply, WorkerFailure>> {
    let slots: Vec<std::sync::Mutex<Worker>> = (0..jobs.max(1))
        .map(|_| std::sync::Mutex::new(Worker::new(spec.clone())))
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    crate::pool::parallel_map(requests, slots.len(), |req| {
        let slot = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % slots.len();
        let reply = slots[slot]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .call(req, timeout);
        done();
        reply
    })
}

/// [`call_all`], but each request first takes one of `slots` (shared with other callers, so
/// several sessions together run at most that many requests at once).
pub fn call_all_shared(
    spec: &WorkerSpec,
    jobs: usize,
    requests: &[Request],
    timeout: Duration,
    slots: &crate::pool::Slots,
    done: impl Fn() + Sync,
) -> Vec<Result<Reply, WorkerFailure>> {
    let workers: Vec<std::sync::Mutex<Worker>> = (0..jobs.max(1))
        .map(|_| std::sync::Mutex::new(Worker::new(spec.clone())))
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    crate::pool::parallel_map(requests, workers.len(), |req| {
        let _slot = slots.take();
        let w = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % workers.len();
        let reply = workers[w]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .call(req, timeout);
        done();
        reply
    })
}
