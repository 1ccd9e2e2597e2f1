//! Passwords and session tokens.
//!
//! Passwords are argon2id hashes (the crate's defaults: 19 MiB, 2 passes, 1
//! lane). Hashing is deliberately slow, so it runs on the blocking pool and a
//! semaphore bounds how many run at once: a login storm queues instead of
//! starving everything else of CPU. Tokens are 32 random bytes; the store
//! keeps only their SHA-256, so a leaked database holds no usable token.

use std::sync::Arc;

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, SaltString};
use argon2::{Argon2, PasswordVerifier};
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::error::ServiceError;

/// Hashes and verifies passwords off the async workers.
#[derive(Debug, Clone)]
pub struct Passwords {
    permits: Arc<Semaphore>,
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
        }
    }

    /// The PHC string of a new argon2id hash of `password`.
    ///
    /// # Errors
    /// `internal` if hashing fails.
    pub async fn hash(&self, password: String) -> Result<String, ServiceError> {
        let _permit = self.permits.acquire().await.map_err(|_| ServiceError::internal())?;
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
        let _permit = self.permits.acquire().await.map_err(|_| ServiceError::internal())?;
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
