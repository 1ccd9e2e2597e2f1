//! The server's blocking locks, which recover from poisoning.
//!
//! A `std` lock is poisoned when a thread panics while holding it. Every lock
//! in the server guards a short critical section that never awaits, calls
//! no code it does not know, and changes its data in steps that each leave
//! it valid (a push onto a queue, an insert into a map, a counter, a handle
//! cloned or replaced); so a panic elsewhere in the panicking thread cannot
//! have left the data half-changed, and the next holder can use it as it
//! is. Refusing it instead would turn one failed task (which tokio contains)
//! into a node that fails every later request touching that lock: every
//! delivery through a hub shard, every login through the hashing pool.
//!
//! So the locks here are the `std` ones with `lock`, `read` and `write`
//! that take the guard back from a poisoned lock. Whoever adds a critical
//! section keeps to the rule above; a section that could not (one that
//! must change two things together and may panic between them) needs a
//! different design, not this type.

use std::sync::{MutexGuard, PoisonError, RwLockReadGuard, RwLockWriteGuard};

/// A `std::sync::Mutex` whose [`lock`](Mutex::lock) recovers from poisoning
/// (see the [module docs](self)).
#[derive(Debug, Default)]
pub struct Mutex<T: ?Sized>(std::sync::Mutex<T>);

impl<T> Mutex<T> {
    /// A mutex holding `value`.
    pub const fn new(value: T) -> Self {
        Self(std::sync::Mutex::new(value))
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Blocks until the lock is free and takes it, poisoned or not.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A `std::sync::RwLock` whose [`read`](RwLock::read) and
/// [`write`](RwLock::write) recover from poisoning (see the
/// [module docs](self)).
#[derive(Debug, Default)]
pub struct RwLock<T: ?Sized>(std::sync::RwLock<T>);

impl<T> RwLock<T> {
    /// A lock holding `value`.
    pub const fn new(value: T) -> Self {
        Self(std::sync::RwLock::new(value))
    }
}

impl<T: ?Sized> RwLock<T> {
    /// Blocks until no writer holds the lock and takes a shared guard,
    /// poisoned or not.
    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Blocks until nobody holds the lock and takes it, poisoned or not.
    pub fn write(&self) -> RwLockWriteGuard<'_, T> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Waits on `condvar` with the guard of one of these mutexes; the guard
/// comes back poisoned or not.
pub fn wait<'guard, T>(
    condvar: &std::sync::Condvar,
    guard: MutexGuard<'guard, T>,
) -> MutexGuard<'guard, T> {
    condvar.wait(guard).unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_poisoned_mutex_is_still_usable() {
        let counter = Arc::new(Mutex::new(1));
        let holder = counter.clone();
        let panicked = std::thread::spawn(move || {
            let _guard = holder.lock();
            panic!("a panic while holding the lock");
        })
        .join();
        assert!(panicked.is_err());
        assert!(counter.0.is_poisoned());
        *counter.lock() += 1;
        assert_eq!(*counter.lock(), 2);
    }

    #[test]
    fn a_poisoned_rwlock_is_still_usable() {
        let table = Arc::new(RwLock::new(vec![1]));
        let holder = table.clone();
        let panicked = std::thread::spawn(move || {
            let _guard = holder.write();
            panic!("a panic while holding the lock");
        })
        .join();
        assert!(panicked.is_err());
        assert!(table.0.is_poisoned());
        table.write().push(2);
        assert_eq!(*table.read(), [1, 2]);
    }
}
