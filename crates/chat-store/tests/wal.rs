//! The SQLite store's write-ahead log: it stays under its bound while
//! appends keep coming and readers keep reading, and a clean close empties
//! it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_proto::{ConversationId, Target, UserId};
use chat_store::sqlite::SqliteStore;
use chat_store::{MessageStore, NewMessage, Store};

const NOW: i64 = 1_700_000_000_000;

/// The bound the tests set: small, so that a few thousand messages pass it
/// many times over.
const LIMIT: u64 = 1024 * 1024;

/// The size of the database's `-wal` file, 0 when there is none.
fn wal_size(database: &Path) -> u64 {
    let mut wal = database.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(wal).map_or(0, |metadata| metadata.len())
}

/// A store in a fresh file with two friends; the directory goes with it.
struct Friends {
    store: Arc<dyn Store>,
    database: PathBuf,
    url: String,
    alice: UserId,
    bob: UserId,
    conversation: ConversationId,
    _directory: tempfile::TempDir,
}

impl Friends {
    async fn new(params: &str) -> Friends {
        let directory = tempfile::tempdir().unwrap();
        let database = directory.path().join("chat.db");
        let url = format!("sqlite://{}?{params}", database.display());
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&url).await.unwrap());
        let alice = store.create_user("alice", "hash", NOW).await.unwrap().id;
        let bob = store.create_user("bob", "hash", NOW).await.unwrap().id;
        store
            .add_friend_request(alice, bob, None, NOW)
            .await
            .unwrap();
        let conversation = store
            .respond_friend_request(alice, bob, true, NOW)
            .await
            .unwrap()
            .unwrap();
        Friends {
            store,
            database,
            url,
            alice,
            bob,
            conversation,
            _directory: directory,
        }
    }

    /// Message `index` of writer `writer`, with a body of `body_len` bytes.
    fn message(&self, writer: usize, index: usize, body_len: usize) -> NewMessage {
        // Even writers send from alice, odd ones from bob.
        let (from, to) = [(self.alice, self.bob), (self.bob, self.alice)][writer % 2];
        NewMessage {
            sender_id: from,
            sender_name: String::new(),
            target: Target::User(to),
            client_msg_id: format!("w{writer}-{index}"),
            body: "x".repeat(body_len),
            now_ms: NOW,
        }
    }
}

/// Drives `messages` appends from 8 concurrent writers while two tasks read
/// history through the store and a second connection holds read
/// transactions open (the snapshots that keep a log from restarting), and
/// samples the log's size every millisecond. Returns the largest size seen.
async fn append_while_reading(friends: &Friends, messages: usize, body_len: usize) -> u64 {
    const WRITERS: usize = 8;
    // A bound on the whole run in time, besides its count.
    const DEADLINE: Duration = Duration::from_secs(120);
    let stop = Arc::new(AtomicBool::new(false));
    let largest = Arc::new(AtomicU64::new(0));

    let sampler = {
        let (stop, largest, database) = (stop.clone(), largest.clone(), friends.database.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                largest.fetch_max(wal_size(&database), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let snapshot_holder = {
        let (stop, database) = (stop.clone(), friends.database.clone());
        std::thread::spawn(move || {
            let conn = rusqlite::Connection::open_with_flags(
                &database,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .unwrap();
            let mut transactions = 0u64;
            while !stop.load(Ordering::Relaxed) {
                conn.execute_batch("BEGIN").unwrap();
                let _: i64 = conn
                    .query_row("SELECT count(*) FROM messages", [], |row| row.get(0))
                    .unwrap();
                std::thread::sleep(Duration::from_millis(5));
                conn.execute_batch("COMMIT").unwrap();
                transactions += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            transactions
        })
    };
    let mut readers = Vec::new();
    for _ in 0..2 {
        let (stop, store, conversation) =
            (stop.clone(), friends.store.clone(), friends.conversation);
        readers.push(tokio::spawn(async move {
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                store.history(conversation, None, None, 50).await.unwrap();
                reads += 1;
            }
            reads
        }));
    }

    let started = Instant::now();
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let store = friends.store.clone();
        let batch: Vec<NewMessage> = (0..messages / WRITERS)
            .map(|index| friends.message(writer, index, body_len))
            .collect();
        writers.push(tokio::spawn(async move {
            for message in batch {
                if started.elapsed() > DEADLINE {
                    break;
                }
                store.append_message(message).await.unwrap();
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    assert!(
        started.elapsed() <= DEADLINE,
        "appends took longer than {DEADLINE:?}"
    );
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        assert!(reader.await.unwrap() > 0, "the store's readers never read");
    }
    assert!(
        snapshot_holder.join().unwrap() > 0,
        "the snapshot holder never read"
    );
    sampler.join().unwrap();
    largest.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_wal_stays_under_its_limit_while_appends_and_reads_go_on() {
    // Fewer messages with a disk sync per batch, still several times the bound.
    for (synchronous, messages) in [("normal", 8000), ("full", 4000)] {
        let friends = Friends::new(&format!("wal_limit=1MiB&synchronous={synchronous}")).await;
        let body_len = 1000;
        let largest = append_while_reading(&friends, messages, body_len).await;
        // What went through the log is many times the bound: the log must
        // have restarted, not merely stayed small.
        let database_size = std::fs::metadata(&friends.database).unwrap().len();
        assert!(
            database_size > 3 * LIMIT,
            "synchronous={synchronous}: only {database_size} bytes written"
        );
        assert!(
            largest <= LIMIT,
            "synchronous={synchronous}: the WAL reached {largest} bytes, over {LIMIT}"
        );
        let stored = friends
            .store
            .history(friends.conversation, None, None, 10)
            .await
            .unwrap();
        assert_eq!(
            stored.last().map(|message| message.seq.0),
            Some(u64::try_from(messages).unwrap())
        );
        friends.store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_close_empties_the_wal() {
    for synchronous in ["normal", "full"] {
        let friends = Friends::new(&format!("synchronous={synchronous}")).await;
        for index in 0..300 {
            friends
                .store
                .append_message(friends.message(index % 2, index, 200))
                .await
                .unwrap();
        }
        assert!(wal_size(&friends.database) > 0, "nothing was logged");
        friends.store.close().await;
        assert_eq!(
            wal_size(&friends.database),
            0,
            "synchronous={synchronous}: the WAL is not empty after close"
        );
        // Nothing was lost on the way into the database file.
        let store = SqliteStore::open(&friends.url).await.unwrap();
        let stored = store
            .history(friends.conversation, None, None, 1000)
            .await
            .unwrap();
        assert_eq!(stored.len(), 300);
        store.close().await;
    }
}
