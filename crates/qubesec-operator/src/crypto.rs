//! The crypto pool: key generation, signing, verification, encapsulation and issuance run here,
//! on a fixed number of threads with large stacks, never on the async runtime. A reconcile that
//! needs crypto waits for a free worker without holding an async worker thread, so the Lease
//! renewal, the watches and `/readyz` keep their pace however much crypto is queued.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, oneshot};

use crate::error::{Error, Result};

/// Stack size of a crypto worker. SLH-DSA-256 keeps its 49 KiB signatures and much more on the
/// stack and needs at least 8 MiB (docs/decisions.md); the pages are only touched when used.
pub const WORKER_STACK: usize = 16 * 1024 * 1024;

type Job = Box<dyn FnOnce() + Send>;

/// A bounded pool of crypto threads, started on first use.
pub struct CryptoPool {
    jobs: Mutex<Sender<Job>>,
    queue: Arc<Mutex<Receiver<Job>>>,
    /// One permit per worker: at most that many jobs are handed over at a time, the rest wait
    /// (asynchronously) for a permit, so the queue never grows past the workers.
    permits: Semaphore,
    workers: usize,
    started: Mutex<usize>,
}

impl std::fmt::Debug for CryptoPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CryptoPool").field("workers", &self.workers).finish_non_exhaustive()
    }
}

/// The default number of crypto workers: the CPUs this process may use.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
}

impl CryptoPool {
    /// A pool of at most `workers` threads (at least one), each started when first needed.
    /// The threads end when the pool is dropped.
    pub fn new(workers: usize) -> Self {
        let (tx, rx) = channel::<Job>();
        Self {
            jobs: Mutex::new(tx),
            queue: Arc::new(Mutex::new(rx)),
            permits: Semaphore::new(workers.max(1)),
            workers: workers.max(1),
            started: Mutex::new(0),
        }
    }

    /// How many threads the pool may run.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Starts one more thread unless all are running. Each job that holds a permit calls this
    /// first, so there are always at least as many threads as jobs handed over.
    fn grow(&self) -> Result<()> {
        let mut started = self.started.lock().unwrap_or_else(PoisonError::into_inner);
        if *started >= self.workers {
            return Ok(());
        }
        let queue = self.queue.clone();
        std::thread::Builder::new()
            .name(format!("qubesec-crypto-{started}"))
            .stack_size(WORKER_STACK)
            .spawn(move || work(&queue))
            .map_err(|e| Error::Transient(format!("could not start a crypto thread: {e}")))?;
        *started += 1;
        Ok(())
    }

    /// Runs `f` on a worker and returns its result and how long it ran (excluding the wait).
    ///
    /// # Errors
    /// [`Error::Bug`] if the worker died (a panic in `f`, which our crypto code does not do);
    /// [`Error::Transient`] if no thread could be started.
    pub async fn run<T, F>(&self, f: F) -> Result<(T, Duration)>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let _permit = self.permits.acquire().await.map_err(|_| Error::bug("crypto pool closed"))?;
        self.grow()?;
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let started = Instant::now();
            let out = f();
            let _ = tx.send((out, started.elapsed()));
        });
        self.jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send(job)
            .map_err(|_| Error::bug("crypto pool closed"))?;
        rx.await.map_err(|_| Error::bug("a crypto worker stopped before answering"))
    }
}

fn work(rx: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only while waiting for the next job, never while running one.
        let job = match rx.lock().unwrap_or_else(PoisonError::into_inner).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        // A panicking job (a bug) loses its answer, not the worker.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn slh_dsa_256f_runs_on_a_worker_while_the_runtime_stays_free() {
        let pool = CryptoPool::new(1);
        let (ticked, wait) = std::sync::mpsc::channel::<()>();
        let alg = qubesec_core::SignatureAlgorithm::SlhDsaSha2_256f;
        let job = pool.run(move || {
            // Blocks until the async side has run: on the runtime's own thread this would never return.
            wait.recv_timeout(Duration::from_secs(60)).map_err(|_| "the runtime never ran while crypto was busy")?;
            // The whole SLH-DSA-256f round trip runs on the worker's stack (too big for 2 MiB threads).
            let key = qubesec_core::SigningKey::generate(alg).map_err(|_| "keygen")?;
            let sig = key.sign(b"message", b"ctx").map_err(|_| "sign")?;
            let public = key.verifying_key().map_err(|_| "public key")?;
            public.verify_bytes(b"message", b"ctx", sig.as_bytes()).map_err(|_| "verify")?;
            Ok::<_, &str>(sig.as_bytes().len())
        });
        let ticker = async move {
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            ticked.send(()).unwrap();
        };
        let (result, ()) = tokio::join!(job, ticker);
        let (len, took) = result.unwrap();
        assert_eq!(len, Ok(49_856));
        assert!(took > Duration::ZERO);
    }

    #[tokio::test]
    async fn a_panicking_job_is_an_error_and_the_worker_survives() {
        let pool = CryptoPool::new(1);
        let err = pool.run(|| -> u8 { panic!("bug") }).await.unwrap_err();
        assert_eq!(err.category(), crate::error::Category::Bug);
        assert_eq!(pool.run(|| 7).await.unwrap().0, 7);
    }

    #[tokio::test]
    async fn the_pool_is_bounded_and_every_job_answers() {
        let pool = Arc::new(CryptoPool::new(2));
        assert_eq!(pool.workers(), 2);
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let jobs = (0..16).map(|i| {
            let (pool, running, most) = (pool.clone(), running.clone(), most.clone());
            async move {
                pool.run(move || {
                    use std::sync::atomic::Ordering::SeqCst;
                    let now = running.fetch_add(1, SeqCst) + 1;
                    most.fetch_max(now, SeqCst);
                    std::thread::sleep(Duration::from_millis(5));
                    running.fetch_sub(1, SeqCst);
                    i * 2
                })
                .await
                .unwrap()
                .0
            }
        });
        let out = futures::future::join_all(jobs).await;
        assert_eq!(out, (0..16).map(|i| i * 2).collect::<Vec<_>>());
        assert!(most.load(std::sync::atomic::Ordering::SeqCst) <= 2, "more jobs ran at once than workers");
    }
}
