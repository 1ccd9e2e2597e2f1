//! Passwords and session tokens.
//!
//! Passwords are argon2id hashes (by default the crate's defaults: 19 MiB, 2
//! passes, 1 lane). Hashing is deliberately slow, so it runs on a few
//! dedicated threads and semaphores bound how many wait for them: a login
//! storm queues instead of starving everything else of CPU, and logins are
//! served before registrations, so a registration flood cannot hold logins
//! up. Tokens are 32 random bytes; the store
//! keeps only their SHA-256, so a leaked database holds no usable token.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, OnceLock};
use std::time::Duration;

use argon2::password_hash::{
    self,
    rand_core::{OsRng, RngCore},
    Output, ParamsString, PasswordHash, SaltString,
};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::Engine;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use chat_proto::Status;

use crate::error::ServiceError;
use crate::lock::Mutex;

/// How long a password operation may wait for a free hashing slot before
/// the server answers `unavailable` instead of queueing without bound.
const QUEUE_WAIT: Duration = Duration::from_secs(5);

/// A job for a hashing thread.
type HashJob = Box<dyn FnOnce() + Send>;

/// Which queue a password operation waits in. Logins are served first, so
/// however many registrations are waiting, a login waits at most for the
/// hashes already running (one per thread) and for other logins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// A login (or an operator's command): served first.
    Login,
    /// A new account: served when no login is waiting, and only a few at a
    /// time.
    Registration,
}

/// The jobs waiting for a hashing thread, logins apart from registrations.
#[derive(Default)]
struct Queues {
    logins: VecDeque<HashJob>,
    registrations: VecDeque<HashJob>,
    closed: bool,
}

impl Queues {
    fn next(&mut self) -> Option<HashJob> {
        self.logins
            .pop_front()
            .or_else(|| self.registrations.pop_front())
    }
}

/// The queues and the signal that wakes an idle hashing thread.
type SharedQueues = Arc<(Mutex<Queues>, Condvar)>;

/// A few long-lived threads that do all the hashing. Each argon2 call
/// allocates its 19 MiB block; on the blocking pool every new thread would
/// keep one such block in its own allocator arena, and a login storm would
/// leave hundreds of MiB behind. A fixed set of threads reuses its blocks.
struct HashPool {
    queues: SharedQueues,
}

impl std::fmt::Debug for HashPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashPool").finish_non_exhaustive()
    }
}

impl HashPool {
    fn start(threads: usize) -> HashPool {
        let queues: SharedQueues = Arc::new((Mutex::new(Queues::default()), Condvar::new()));
        for index in 0..threads {
            let queues = queues.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("argon2-{index}"))
                .spawn(move || loop {
                    // The lock is held only to take the next job.
                    let job = {
                        let (lock, wake) = &*queues;
                        let mut waiting = lock.lock();
                        loop {
                            if let Some(job) = waiting.next() {
                                break job;
                            }
                            if waiting.closed {
                                return;
                            }
                            waiting = crate::lock::wait(wake, waiting);
                        }
                    };
                    job();
                });
            if let Err(error) = spawned {
                tracing::error!(%error, "cannot start a password hashing thread");
            }
        }
        HashPool { queues }
    }

    /// Queues a job; false once the pool is closed.
    fn submit(&self, priority: Priority, job: HashJob) -> bool {
        let (lock, wake) = &*self.queues;
        let mut waiting = lock.lock();
        if waiting.closed {
            return false;
        }
        match priority {
            Priority::Login => waiting.logins.push_back(job),
            Priority::Registration => waiting.registrations.push_back(job),
        }
        wake.notify_one();
        true
    }

    /// Runs `work` on a hashing thread and waits for its result.
    async fn run<T: Send + 'static>(
        &self,
        priority: Priority,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ServiceError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: HashJob = Box::new(move || {
            let _ = reply.send(work());
        });
        if !self.submit(priority, job) {
            return Err(ServiceError::internal());
        }
        answer.await.map_err(|_| ServiceError::internal())
    }
}

impl Drop for HashPool {
    fn drop(&mut self) {
        let (lock, wake) = &*self.queues;
        lock.lock().closed = true;
        wake.notify_all();
    }
}

/// The argon2id cost of new password hashes, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashCost {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for HashCost {
    /// The argon2 crate's defaults (OWASP's recommendation): 19 MiB, 2
    /// passes, 1 lane.
    fn default() -> Self {
        Self {
            memory_kib: Params::DEFAULT_M_COST,
            iterations: Params::DEFAULT_T_COST,
            parallelism: Params::DEFAULT_P_COST,
        }
    }
}

/// The most memory a stored hash may ask for (256 MiB), unless the
/// configured cost is higher.
pub const MAX_STORED_MEMORY_KIB: u32 = 256 * 1024;
/// The most passes a stored hash may ask for, unless configured higher.
pub const MAX_STORED_ITERATIONS: u32 = 16;
/// The most lanes a stored hash may ask for, unless configured higher.
pub const MAX_STORED_PARALLELISM: u32 = 8;

impl HashCost {
    fn params(self) -> Result<Params, password_hash::Error> {
        Params::new(
            self.memory_kib,
            self.iterations,
            self.parallelism,
            Some(Params::DEFAULT_OUTPUT_LEN),
        )
        .map_err(password_hash::Error::from)
    }

    /// Whether a stored hash's parameters are within what this server will
    /// spend on one verification.
    fn allows(self, params: &Params) -> bool {
        params.m_cost() <= self.memory_kib.max(MAX_STORED_MEMORY_KIB)
            && params.t_cost() <= self.iterations.max(MAX_STORED_ITERATIONS)
            && params.p_cost() <= self.parallelism.max(MAX_STORED_PARALLELISM)
    }

    /// Whether `phc` was made with exactly this cost (argon2id, current
    /// version); a hash that was not should be replaced at the next login.
    #[must_use]
    pub fn is_current(self, phc: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(phc) else {
            return false;
        };
        let Ok(params) = Params::try_from(&parsed) else {
            return false;
        };
        parsed.algorithm == Algorithm::Argon2id.ident()
            && parsed.version == Some(Version::V0x13.into())
            && params.m_cost() == self.memory_kib
            && params.t_cost() == self.iterations
            && params.p_cost() == self.parallelism
    }
}

/// Hashes and verifies passwords off the async workers.
#[derive(Debug, Clone)]
pub struct Passwords {
    /// Concurrent logins (and operators' hashes) waiting or hashing.
    login_permits: Arc<Semaphore>,
    /// Concurrent registrations waiting or hashing: fewer, so a flood of
    /// them leaves threads for logins.
    registration_permits: Arc<Semaphore>,
    pool: Arc<HashPool>,
    cost: HashCost,
    /// A hash of no real password, verified against for unknown accounts.
    decoy: Arc<OnceLock<String>>,
}

impl Default for Passwords {
    fn default() -> Self {
        Self::new()
    }
}

impl Passwords {
    /// Hashes at the default cost on as many threads as there are CPUs.
    #[must_use]
    pub fn new() -> Self {
        Self::with_cost(HashCost::default())
    }

    /// Hashes new passwords at `cost`, on as many threads as there are CPUs.
    #[must_use]
    pub fn with_cost(cost: HashCost) -> Self {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            login_permits: Arc::new(Semaphore::new(cpus)),
            registration_permits: Arc::new(Semaphore::new((cpus / 2).max(1))),
            pool: Arc::new(HashPool::start(cpus)),
            cost,
            decoy: Arc::new(OnceLock::new()),
        }
    }

    /// The cost of new hashes.
    #[must_use]
    pub fn cost(&self) -> HashCost {
        self.cost
    }

    async fn permit(
        &self,
        priority: Priority,
    ) -> Result<tokio::sync::SemaphorePermit<'_>, ServiceError> {
        let permits = match priority {
            Priority::Login => &self.login_permits,
            Priority::Registration => &self.registration_permits,
        };
        let started = std::time::Instant::now();
        let permit = tokio::time::timeout(QUEUE_WAIT, permits.acquire()).await;
        metrics::histogram!("chatd_password_hash_wait_seconds")
            .record(started.elapsed().as_secs_f64());
        match permit {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(ServiceError::internal()),
            Err(_) => Err(ServiceError::new(
                Status::Unavailable,
                "the server is busy checking passwords; retry shortly",
            )),
        }
    }

    /// Spends as long as a real verification on an account that does not
    /// exist, and always fails.
    ///
    /// # Errors
    /// As [`Passwords::verify`].
    pub async fn verify_nothing(&self, password: String) -> Result<bool, ServiceError> {
        let decoy = match self.decoy.get() {
            Some(decoy) => decoy.clone(),
            None => {
                let decoy = self
                    .hash("no account has this password".to_owned(), Priority::Login)
                    .await?;
                self.decoy.get_or_init(|| decoy).clone()
            }
        };
        self.verify(password, decoy).await?;
        Ok(false)
    }

    /// The PHC string of a new argon2id hash of `password`, waiting in the
    /// queue of `priority`.
    ///
    /// # Errors
    /// `unavailable` when no hashing thread is free in time, `internal` if
    /// hashing fails.
    pub async fn hash(&self, password: String, priority: Priority) -> Result<String, ServiceError> {
        let _permit = self.permit(priority).await?;
        let cost = self.cost;
        self.pool
            .run(priority, move || hash_with_kept_memory(&password, cost))
            .await?
            .map_err(|error| {
                tracing::error!(%error, "password hashing failed");
                ServiceError::internal()
            })
    }

    /// Whether `password` matches the stored PHC string. A stored hash that
    /// asks for more memory, passes or lanes than this server allows (see
    /// [`MAX_STORED_MEMORY_KIB`]) matches nothing: verifying it would let
    /// whoever wrote the row decide how much memory the server allocates.
    ///
    /// # Errors
    /// `unavailable` when no hashing thread is free in time, `internal` if
    /// the stored hash is unreadable.
    pub async fn verify(&self, password: String, phc: String) -> Result<bool, ServiceError> {
        let _permit = self.permit(Priority::Login).await?;
        let cost = self.cost;
        self.pool
            .run(Priority::Login, move || {
                verify_with_kept_memory(&password, &phc, cost)
            })
            .await?
            .map_err(|error| {
                tracing::error!(%error, "unreadable password hash in store");
                ServiceError::internal()
            })
    }
}

thread_local! {
    /// This hashing thread's argon2 working memory (19 MiB with the default
    /// parameters), allocated once and reused by every hash on the thread.
    static BLOCKS: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Runs argon2 in this thread's kept memory.
fn compute(
    argon2: &Argon2<'_>,
    params: &Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), password_hash::Error> {
    BLOCKS.with(|blocks| {
        let mut blocks = blocks.borrow_mut();
        let needed = params.block_count();
        if blocks.len() < needed {
            blocks.resize(needed, Block::default());
        }
        argon2
            .hash_password_into_with_memory(password, salt, out, &mut blocks[..needed])
            .map_err(password_hash::Error::from)
    })
}

/// A new argon2id PHC string for `password`, with a fresh random salt.
fn hash_with_kept_memory(password: &str, cost: HashCost) -> Result<String, password_hash::Error> {
    let params = cost.params()?;
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let raw_salt = salt.as_salt().decode_b64(&mut salt_bytes)?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    compute(&argon2, &params, password.as_bytes(), raw_salt, &mut out)?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params)?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out)?),
    };
    Ok(hash.to_string())
}

/// Whether `password` matches the PHC string (any argon2 variant, and any
/// parameters it names that `cost` allows), compared in constant time.
fn verify_with_kept_memory(
    password: &str,
    phc: &str,
    cost: HashCost,
) -> Result<bool, password_hash::Error> {
    let parsed = PasswordHash::new(phc)?;
    let algorithm = Algorithm::try_from(parsed.algorithm)?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()?
        .unwrap_or_default();
    let params = Params::try_from(&parsed)?;
    if !cost.allows(&params) {
        tracing::warn!(
            memory_kib = params.m_cost(),
            iterations = params.t_cost(),
            parallelism = params.p_cost(),
            "a stored password hash asks for more than this server allows; refusing it"
        );
        return Ok(false);
    }
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Err(password_hash::Error::PhcStringField);
    };
    let mut salt_bytes = [0u8; 64];
    let raw_salt = salt.decode_b64(&mut salt_bytes)?;
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let mut out = vec![0u8; expected.len()];
    compute(&argon2, &params, password.as_bytes(), raw_salt, &mut out)?;
    // `Output`'s equality is constant-time.
    Ok(Output::new(&out)? == expected)
}

/// A new random session token (URL-safe base64 of 32 bytes straight from
/// the operating system's random source).
#[must_use]
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// What the store keeps of a token: its SHA-256 in hex.
#[must_use]
pub fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_then_verify() {
        let passwords = Passwords::new();
        let hash = passwords
            .hash("correct horse".into(), Priority::Registration)
            .await
            .unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(passwords
            .verify("correct horse".into(), hash.clone())
            .await
            .unwrap());
        assert!(!passwords.verify("wrong horse".into(), hash).await.unwrap());
    }

    #[test]
    fn kept_memory_hashes_agree_with_the_argon2_crate() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let cost = HashCost::default();
        let ours = hash_with_kept_memory("pässwörd 🔑", cost).unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default()
            .verify_password("pässwörd 🔑".as_bytes(), &parsed)
            .is_ok());
        let salt = SaltString::generate(&mut OsRng);
        let theirs = Argon2::default()
            .hash_password(b"another one", &salt)
            .unwrap()
            .to_string();
        assert!(verify_with_kept_memory("another one", &theirs, cost).unwrap());
        assert!(!verify_with_kept_memory("another two", &theirs, cost).unwrap());
        assert!(verify_with_kept_memory("x", "not a phc string", cost).is_err());
    }

    #[test]
    fn stored_hashes_beyond_the_allowed_cost_match_nothing() {
        let cost = HashCost::default();
        // A valid hash of "password", edited to ask for 4 GiB and 1000 passes:
        // refused before any memory is allocated.
        let honest = hash_with_kept_memory("password", cost).unwrap();
        assert!(verify_with_kept_memory("password", &honest, cost).unwrap());
        let bomb = honest.replace("m=19456,t=2", "m=4194304,t=1000");
        assert_ne!(bomb, honest);
        assert!(!verify_with_kept_memory("password", &bomb, cost).unwrap());
        let slow = honest.replace("t=2", "t=17");
        assert!(!verify_with_kept_memory("password", &slow, cost).unwrap());
    }

    #[test]
    fn a_hash_is_current_only_at_the_configured_cost() {
        let cost = HashCost::default();
        let hash = hash_with_kept_memory("password", cost).unwrap();
        assert!(cost.is_current(&hash));
        let stronger = HashCost {
            iterations: 3,
            ..cost
        };
        assert!(!stronger.is_current(&hash));
        assert!(!cost.is_current("not a phc string"));
    }

    #[test]
    fn logins_are_served_before_waiting_registrations() {
        let pool = HashPool::start(1);
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let order = Arc::new(Mutex::new(Vec::new()));
        // Hold the only thread, queue five registrations, then a login.
        assert!(pool.submit(
            Priority::Registration,
            Box::new(move || {
                let _ = gate.recv();
            })
        ));
        for index in 0..5 {
            let order = order.clone();
            assert!(pool.submit(
                Priority::Registration,
                Box::new(move || order.lock().push(format!("registration {index}")))
            ));
        }
        let (done, finished) = std::sync::mpsc::channel::<()>();
        {
            let order = order.clone();
            assert!(pool.submit(
                Priority::Login,
                Box::new(move || order.lock().push("login".to_owned()))
            ));
            assert!(pool.submit(
                Priority::Registration,
                Box::new(move || {
                    let _ = done.send(());
                })
            ));
        }
        release.send(()).unwrap();
        finished
            .recv_timeout(Duration::from_secs(10))
            .expect("every job runs");
        assert_eq!(order.lock()[0], "login");
    }

    /// Takes every free slot of `permits`, as hashes running would.
    fn hold_every_slot(permits: &Arc<Semaphore>) -> tokio::sync::OwnedSemaphorePermit {
        let free = u32::try_from(permits.available_permits()).expect("a few slots");
        permits
            .clone()
            .try_acquire_many_owned(free)
            .expect("the slots are free")
    }

    // A paused clock is sound here: the wait for a slot involves only the
    // semaphore and a timer, no thread or socket the clock could jump past.
    #[tokio::test(start_paused = true)]
    async fn a_password_operation_waits_for_a_slot_at_most_the_queue_wait() {
        let tick = Duration::from_millis(1);
        let passwords = Passwords::new();
        let held = hold_every_slot(&passwords.registration_permits);

        // With every slot busy, a registration is refused as busy once the
        // queue wait has passed, and not before.
        let started = tokio::time::Instant::now();
        // The outer timeout turns a wait without bound into a failure
        // rather than a test that never ends.
        let refused =
            tokio::time::timeout(2 * QUEUE_WAIT, passwords.permit(Priority::Registration))
                .await
                .expect("answered within the queue wait")
                .expect_err("no slot came free");
        assert_eq!(refused.status, Status::Unavailable);
        let waited = started.elapsed();
        assert!(
            waited >= QUEUE_WAIT && waited < QUEUE_WAIT + tick,
            "{waited:?}"
        );

        // Logins wait in a queue of their own.
        let started = tokio::time::Instant::now();
        drop(
            passwords
                .permit(Priority::Login)
                .await
                .expect("a login slot"),
        );
        assert_eq!(started.elapsed(), Duration::ZERO);

        // A slot that comes free just before the deadline is taken.
        let started = tokio::time::Instant::now();
        let release = tokio::spawn(async move {
            tokio::time::sleep(QUEUE_WAIT - tick).await;
            drop(held);
        });
        let _permit = passwords
            .permit(Priority::Registration)
            .await
            .expect("the freed slot");
        let waited = started.elapsed();
        assert!(
            waited >= QUEUE_WAIT - tick && waited < QUEUE_WAIT,
            "{waited:?}"
        );
        release.await.unwrap();
    }

    #[test]
    fn tokens_are_unique_and_hash_stably() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(token_hash(&a), token_hash(&a));
        assert_eq!(token_hash(&a).len(), 64);
    }
}
