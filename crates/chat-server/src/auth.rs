//! Passwords and session tokens.
//!
//! Passwords are argon2id hashes (the crate's defaults: 19 MiB, 2 passes, 1
//! lane). Hashing is deliberately slow, so it runs on the blocking pool and a
//! semaphore bounds how many run at once: a login storm queues instead of
//! starving everything else of CPU. Tokens are 32 random bytes; the store
//! keeps only their SHA-256, so a leaked database holds no usable token.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, SaltString};
use argon2::{Argon2, PasswordVerifier};
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use chat_proto::Status;

use crate::error::ServiceError;

/// How long a password operation may wait for a free hashing slot before
/// the server answers `unavailable` instead of queueing without bound.
const QUEUE_WAIT: Duration = Duration::from_secs(5);

/// Hashes and verifies passwords off the async workers.
#[derive(Debug, Clone)]
pub struct Passwords {
    permits: Arc<Semaphore>,
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
            decoy: Arc::new(OnceLock::new()),
        }
    }

    async fn permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, ServiceError> {
        match tokio::time::timeout(QUEUE_WAIT, self.permits.acquire()).await {
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
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(password.as_bytes(), &salt)
                .map(|hash| hash.to_string())
        })
        .await
        .map_err(|_| ServiceError::internal())?
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
        tokio::task::spawn_blocking(move || {
            let parsed = PasswordHash::new(&phc).map_err(|error| {
                tracing::error!(%error, "unreadable password hash in store");
                ServiceError::internal()
            })?;
            Ok(Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok())
        })
        .await
        .map_err(|_| ServiceError::internal())?
    }
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
    fn tokens_are_unique_and_hash_stably() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(token_hash(&a), token_hash(&a));
        assert_eq!(token_hash(&a).len(), 64);
    }
}
