//! Passwords and session tokens.
//!
//! Passwords are argon2id hashes (the crate's defaults: 19 MiB, 2 passes, 1
//! lane). Hashing is deliberately slow, so it runs on a few dedicated threads
//! and a semaphore bounds how many wait for them: a login storm queues instead of
//! starving everything else of CPU. Tokens are 32 random bytes; the store
//! keeps only their SHA-256, so a leaked database holds no usable token.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use std::cell::RefCell;

use argon2::password_hash::{
    self, rand_core::OsRng, Output, ParamsString, PasswordHash, SaltString,
};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use chat_proto::Status;

use crate::error::ServiceError;

/// How long a password operation may wait for a free hashing slot before
/// the server answers `unavailable` instead of queueing without bound.
const QUEUE_WAIT: Duration = Duration::from_secs(5);

/// A job for a hashing thread.
type HashJob = Box<dyn FnOnce() + Send>;

/// A few long-lived threads that do all the hashing. Each argon2 call
/// allocates its 19 MiB block; on the blocking pool every new thread would
/// keep one such block in its own allocator arena, and a login storm would
/// leave hundreds of MiB behind. A fixed set of threads reuses its blocks.
#[derive(Debug)]
struct HashPool {
    jobs: Mutex<std::sync::mpsc::Sender<HashJob>>,
}

impl HashPool {
    fn start(threads: usize) -> HashPool {
        let (jobs, receiver) = std::sync::mpsc::channel::<HashJob>();
        let receiver = Arc::new(Mutex::new(receiver));
        for index in 0..threads {
            let receiver = receiver.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("argon2-{index}"))
                .spawn(move || loop {
                    // The lock is held only to take the next job.
                    let job = match receiver.lock() {
                        Ok(receiver) => receiver.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(),
                        // Every sender is gone: the server has stopped.
                        Err(_) => return,
                    }
                });
            if let Err(error) = spawned {
                tracing::error!(%error, "cannot start a password hashing thread");
            }
        }
        HashPool {
            jobs: Mutex::new(jobs),
        }
    }

    /// Runs `work` on a hashing thread and waits for its result.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ServiceError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: HashJob = Box::new(move || {
            let _ = reply.send(work());
        });
        self.jobs
            .lock()
            .map_err(|_| ServiceError::internal())?
            .send(job)
            .map_err(|_| ServiceError::internal())?;
        answer.await.map_err(|_| ServiceError::internal())
    }
}

/// Hashes and verifies passwords off the async workers.
#[derive(Debug, Clone)]
pub struct Passwords {
    permits: Arc<Semaphore>,
    pool: Arc<HashPool>,
    /// A hash of no real password, verified against for unknown accounts.
    decoy: Arc<OnceLock<String>>,
}

impl Default for Passwords {
    fn default() -> Self {
        Self::new()
    }
}

impl Passwords {
    /// Allows as many concurrent hashes as there are CPUs.
    #[must_use]
    pub fn new() -> Self {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            permits: Arc::new(Semaphore::new(cpus)),
            pool: Arc::new(HashPool::start(cpus)),
            decoy: Arc::new(OnceLock::new()),
        }
    }

    async fn permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, ServiceError> {
        let started = std::time::Instant::now();
        let permit = tokio::time::timeout(QUEUE_WAIT, self.permits.acquire()).await;
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
                let decoy = self.hash("no account has this password".to_owned()).await?;
                self.decoy.get_or_init(|| decoy).clone()
            }
        };
        self.verify(password, decoy).await?;
        Ok(false)
    }

    /// The PHC string of a new argon2id hash of `password`.
    ///
    /// # Errors
    /// `internal` if hashing fails.
    pub async fn hash(&self, password: String) -> Result<String, ServiceError> {
        let _permit = self.permit().await?;
        self.pool
            .run(move || hash_with_kept_memory(&password))
            .await?
            .map_err(|error| {
                tracing::error!(%error, "password hashing failed");
                ServiceError::internal()
            })
    }

    /// Whether `password` matches the stored PHC string.
    ///
    /// # Errors
    /// `internal` if the stored hash is unreadable.
    pub async fn verify(&self, password: String, phc: String) -> Result<bool, ServiceError> {
        let _permit = self.permit().await?;
        self.pool
            .run(move || verify_with_kept_memory(&password, &phc))
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
fn hash_with_kept_memory(password: &str) -> Result<String, password_hash::Error> {
    let params = Params::default();
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

/// Whether `password` matches the PHC string (any argon2 variant and
/// parameters it names), compared in constant time.
fn verify_with_kept_memory(password: &str, phc: &str) -> Result<bool, password_hash::Error> {
    let parsed = PasswordHash::new(phc)?;
    let algorithm = Algorithm::try_from(parsed.algorithm)?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()?
        .unwrap_or_default();
    let params = Params::try_from(&parsed)?;
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

/// A new random session token (URL-safe base64 of 32 bytes).
#[must_use]
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
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
        let hash = passwords.hash("correct horse".into()).await.unwrap();
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
        let ours = hash_with_kept_memory("pässwörd 🔑").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default()
            .verify_password("pässwörd 🔑".as_bytes(), &parsed)
            .is_ok());
        let salt = SaltString::generate(&mut OsRng);
        let theirs = Argon2::default()
            .hash_password(b"another one", &salt)
            .unwrap()
            .to_string();
        assert!(verify_with_kept_memory("another one", &theirs).unwrap());
        assert!(!verify_with_kept_memory("another two", &theirs).unwrap());
        assert!(verify_with_kept_memory("x", "not a phc string").is_err());
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
