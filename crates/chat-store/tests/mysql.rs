//! What only the MySQL backend promises: several nodes (several stores on one
//! database) writing at once still number messages without gaps, recognise
//! resends, and keep friendships and memberships consistent.
//!
//! Skipped (loudly) when MariaDB is not reachable; see `common`.

mod common;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chat_proto::{ConversationId, GroupId, Role, Seq, Target, UserId};
use chat_store::{
    Appended, FriendAddResult, NewMessage, OnCommit, PendingAppend, Store, StoreError,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const NOW: i64 = 1_700_000_000_000;

/// The "nodes" of each test.
const NODES: usize = 3;

fn message(sender: UserId, target: Target, client_msg_id: &str) -> NewMessage {
    NewMessage {
        sender_id: sender,
        sender_name: String::new(),
        target,
        client_msg_id: client_msg_id.to_owned(),
        body: format!("body of {client_msg_id}"),
        now_ms: NOW,
    }
}

async fn nodes(database: &common::MariaDb) -> Vec<Arc<dyn Store>> {
    let mut nodes = Vec::new();
    for _ in 0..NODES {
        nodes.push(database.open().await);
    }
    nodes
}

async fn close(nodes: Vec<Arc<dyn Store>>) {
    for node in nodes {
        node.close().await;
    }
}

/// A group owned by `owner` with `members` more members, made on `store`.
async fn group_with_members(
    store: &Arc<dyn Store>,
    members: usize,
) -> (GroupId, ConversationId, Vec<UserId>) {
    let owner = store.create_user("owner", "hash", NOW).await.unwrap().id;
    let group = store.create_group(owner, "busy", "", NOW).await.unwrap();
    let mut users = vec![owner];
    for i in 0..members {
        let user = store
            .create_user(&format!("member{i}"), "hash", NOW)
            .await
            .unwrap()
            .id;
        store
            .add_member(group.id, user, Role::Member, NOW)
            .await
            .unwrap();
        users.push(user);
    }
    (group.id, group.conversation_id, users)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_appending_to_one_conversation_number_without_gaps() {
    let Some(database) = common::MariaDb::create("gapfree").await else {
        return;
    };
    let nodes = nodes(&database).await;
    const TASKS_PER_NODE: usize = 4;
    const PER_TASK: usize = 25;
    let (group, conversation, users) = group_with_members(&nodes[0], NODES * TASKS_PER_NODE).await;
    let mut handles = Vec::new();
    for (task, sender) in users[1..].iter().copied().enumerate() {
        let node = nodes[task % NODES].clone();
        handles.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..PER_TASK {
                let sent = node
                    .append_message(message(sender, Target::Group(group), &format!("{i}")))
                    .await
                    .unwrap();
                seqs.push(sent.message.seq.0);
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for handle in handles {
        all.extend(handle.await.unwrap());
    }
    all.sort_unstable();
    let total = u64::try_from(NODES * TASKS_PER_NODE * PER_TASK).unwrap();
    assert_eq!(all, (1..=total).collect::<Vec<_>>());
    let history = nodes[1]
        .history(conversation, None, None, 1000)
        .await
        .unwrap();
    assert_eq!(
        history
            .iter()
            .map(|message| message.seq.0)
            .collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>()
    );
    close(nodes).await;
    database.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_racing_on_two_nodes_is_stored_once() {
    let Some(database) = common::MariaDb::create("dupes").await else {
        return;
    };
    let nodes = nodes(&database).await;
    let (group, conversation, users) = group_with_members(&nodes[0], 1).await;
    let sender = users[1];
    const RESENDS: usize = 30;
    let mut handles = Vec::new();
    for i in 0..RESENDS {
        // The same message through every node at once.
        for node in &nodes {
            let node = node.clone();
            handles.push(tokio::spawn(async move {
                let sent = node
                    .append_message(message(sender, Target::Group(group), &format!("dup{i}")))
                    .await
                    .unwrap();
                (i, sent.message.seq.0, sent.duplicate)
            }));
        }
    }
    let mut seq_of = vec![None; RESENDS];
    let mut originals = 0;
    for handle in handles {
        let (i, seq, duplicate) = handle.await.unwrap();
        // Every node answers with the same number for the same message.
        assert_eq!(*seq_of[i].get_or_insert(seq), seq, "message {i}");
        if !duplicate {
            originals += 1;
        }
    }
    assert_eq!(originals, RESENDS);
    let history = nodes[2]
        .history(conversation, None, None, 1000)
        .await
        .unwrap();
    let total = u64::try_from(RESENDS).unwrap();
    assert_eq!(
        history
            .iter()
            .map(|message| message.seq.0)
            .collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>()
    );
    let ids: HashSet<&str> = history
        .iter()
        .map(|message| message.client_msg_id.as_str())
        .collect();
    assert_eq!(ids.len(), RESENDS);
    close(nodes).await;
    database.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_asking_each_other_at_once_become_friends() {
    let Some(database) = common::MariaDb::create("crossed").await else {
        return;
    };
    let nodes = nodes(&database).await;
    const PAIRS: usize = 10;
    let mut pairs = Vec::new();
    for i in 0..PAIRS {
        let a = nodes[0]
            .create_user(&format!("a{i}"), "h", NOW)
            .await
            .unwrap()
            .id;
        let b = nodes[0]
            .create_user(&format!("b{i}"), "h", NOW)
            .await
            .unwrap()
            .id;
        pairs.push((a, b));
    }
    let mut handles = Vec::new();
    for (i, &(a, b)) in pairs.iter().enumerate() {
        let (first, second) = (nodes[i % NODES].clone(), nodes[(i + 1) % NODES].clone());
        handles.push(tokio::spawn(async move {
            let (one, two) = tokio::join!(
                first.add_friend_request(a, b, None, NOW),
                second.add_friend_request(b, a, None, NOW),
            );
            (one.unwrap(), two.unwrap())
        }));
    }
    for (handle, &(a, b)) in handles.into_iter().zip(&pairs) {
        let outcomes = handle.await.unwrap();
        // One of them asked, the other accepted: never two crossed requests.
        let conversation = match outcomes {
            (FriendAddResult::Pending(_), FriendAddResult::Accepted(conversation))
            | (FriendAddResult::Accepted(conversation), FriendAddResult::Pending(_)) => {
                conversation
            }
            other => panic!("crossed requests: {other:?}"),
        };
        let node = &nodes[2];
        assert_eq!(
            node.friend(a, b).await.unwrap().unwrap().conversation_id,
            conversation
        );
        assert_eq!(
            node.friend(b, a).await.unwrap().unwrap().conversation_id,
            conversation
        );
        assert_eq!(node.pending_requests(a).await.unwrap(), (vec![], vec![]));
    }
    close(nodes).await;
    database.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_while_others_send_splits_history_from_delivery_exactly() {
    let Some(database) = common::MariaDb::create("joinrace").await else {
        return;
    };
    let nodes = nodes(&database).await;
    let (group, _conversation, users) = group_with_members(&nodes[0], 2).await;
    let late = nodes[0].create_user("late", "hash", NOW).await.unwrap().id;
    let (appended_so_far, mut appended_watch) = watch::channel(0usize);
    let appended_so_far = Arc::new(appended_so_far);
    let mut handles = Vec::new();
    for (task, sender) in users[1..].iter().copied().enumerate() {
        let node = nodes[task % NODES].clone();
        let appended_so_far = appended_so_far.clone();
        handles.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            for i in 0..40 {
                let appended = node
                    .append_message(message(sender, Target::Group(group), &format!("{i}")))
                    .await
                    .unwrap();
                sent.push((appended.message.seq.0, appended.recipients.contains(&late)));
                appended_so_far.send_modify(|count| *count += 1);
            }
            sent
        }));
    }
    // Join once the senders are under way, so the join lands among their
    // appends rather than before them.
    tokio::time::timeout(
        Duration::from_secs(30),
        appended_watch.wait_for(|count| *count >= 10),
    )
    .await
    .expect("the senders are under way")
    .expect("a sender is still running");
    nodes[2]
        .add_member(group, late, Role::Member, NOW)
        .await
        .unwrap();
    let mut sent = Vec::new();
    for handle in handles {
        sent.extend(handle.await.unwrap());
    }
    // The late member is offered exactly the messages that named it as a
    // recipient: everything after the point it joined, nothing before.
    let offered: HashSet<u64> = nodes[1]
        .unacked(late, None, 1000)
        .await
        .unwrap()
        .iter()
        .map(|message| message.seq.0)
        .collect();
    // Those appended before the join began cannot name the late member.
    assert!(sent.iter().filter(|(_, named_late)| !named_late).count() >= 10);
    for (seq, named_late) in sent {
        assert_eq!(offered.contains(&seq), named_late, "message {seq}");
    }
    close(nodes).await;
    database.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_without_a_database_or_with_a_missing_one_is_refused() {
    let Some(database) = common::MariaDb::create("urls").await else {
        return;
    };
    let missing = format!("{}_missing", database.url());
    assert!(matches!(
        chat_store::open(&missing).await,
        Err(StoreError::Database(_))
    ));
    let store = chat_store::open(&database.url().replacen("mysql:", "mariadb:", 1))
        .await
        .unwrap();
    assert_eq!(store.backend(), "mysql");
    store.close().await;
    database.drop_now().await;
}

/// What one node's commit hooks saw, in the order they ran: (conversation,
/// seq, duplicate).
type HookLog = Arc<Mutex<Vec<(ConversationId, u64, bool)>>>;

fn logging_hook(log: &HookLog) -> OnCommit {
    let log = log.clone();
    Box::new(move |appended: &Appended| {
        log.lock().unwrap().push((
            appended.message.conversation_id,
            appended.message.seq.0,
            appended.duplicate,
        ));
    })
}

/// Three nodes, each with three senders that pipeline (eight sends in
/// flight, as a session does) into two group conversations at once, one
/// sender on each node also resending messages it already has answers for
/// through another node, and a stranger whose sends are refused in the same
/// batches. Every message is numbered once, without gaps, each sender's
/// messages in the order it sent them; resends get the original back; each
/// node's hooks see every conversation in sequence order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_pipelining_into_shared_conversations_keep_numbers_order_and_resends() {
    let Some(database) = common::MariaDb::create("pipelined").await else {
        return;
    };
    let nodes = nodes(&database).await;
    const SENDERS_PER_NODE: usize = 3;
    const PER_SENDER: usize = 60;
    const WINDOW: usize = 8;
    let (first, first_conversation, users) =
        group_with_members(&nodes[0], NODES * SENDERS_PER_NODE).await;
    let second = nodes[1]
        .create_group(users[0], "second", "", NOW)
        .await
        .unwrap();
    for &user in &users[1..] {
        nodes[1]
            .add_member(second.id, user, Role::Member, NOW)
            .await
            .unwrap();
    }
    let stranger = nodes[2].create_user("stranger", "h", NOW).await.unwrap().id;
    let logs: Vec<HookLog> = (0..NODES).map(|_| HookLog::default()).collect();

    let mut handles = Vec::new();
    for (index, sender) in users[1..].iter().copied().enumerate() {
        let node_index = index % NODES;
        let node = nodes[node_index].clone();
        let other = nodes[(node_index + 1) % NODES].clone();
        let log = logs[node_index].clone();
        let resends = index < NODES;
        let (first, second) = (first, second.id);
        handles.push(tokio::spawn(async move {
            let mut in_flight: VecDeque<(usize, PendingAppend)> = VecDeque::new();
            let mut answered: Vec<(usize, Target, u64)> = Vec::new();
            let mut resent = 0;
            for i in 0..PER_SENDER {
                if in_flight.len() == WINDOW {
                    let (sent, pending) = in_flight.pop_front().unwrap();
                    let appended = pending.await.unwrap();
                    assert!(!appended.duplicate, "send {sent}");
                    answered.push((sent, appended.message.target, appended.message.seq.0));
                }
                if resends && i % 10 == 9 {
                    // Resend the last answered message through another node.
                    let &(sent, target, seq) = answered.last().unwrap();
                    let again = other
                        .append_message(message(sender, target, &format!("m{sent}")))
                        .await
                        .unwrap();
                    assert!(again.duplicate);
                    assert_eq!(again.message.seq.0, seq);
                    resent += 1;
                }
                let target = Target::Group(if i % 2 == 0 { first } else { second });
                let pending = node
                    .queue_append(
                        message(sender, target, &format!("m{i}")),
                        logging_hook(&log),
                    )
                    .await
                    .unwrap();
                in_flight.push_back((i, pending));
            }
            while let Some((sent, pending)) = in_flight.pop_front() {
                let appended = pending.await.unwrap();
                assert!(!appended.duplicate, "send {sent}");
                answered.push((sent, appended.message.target, appended.message.seq.0));
            }
            (sender, answered, resent)
        }));
    }
    let refused_hooks = Arc::new(AtomicUsize::new(0));
    let mut refused = Vec::new();
    for (index, node) in nodes.iter().enumerate() {
        let node = node.clone();
        let refused_hooks = refused_hooks.clone();
        refused.push(tokio::spawn(async move {
            for i in 0..20 {
                let refused_hooks = refused_hooks.clone();
                let result = node
                    .queue_append(
                        message(stranger, Target::Group(first), &format!("s{index}-{i}")),
                        Box::new(move |_: &Appended| {
                            refused_hooks.fetch_add(1, Ordering::Relaxed);
                        }),
                    )
                    .await
                    .unwrap()
                    .await;
                assert!(
                    matches!(result, Err(StoreError::Forbidden(_))),
                    "{result:?}"
                );
            }
        }));
    }
    for handle in refused {
        handle.await.unwrap();
    }
    assert_eq!(refused_hooks.load(Ordering::Relaxed), 0);

    let mut numbers: HashMap<Target, Vec<u64>> = HashMap::new();
    let mut resends = 0;
    for handle in handles {
        let (sender, answered, resent) = handle.await.unwrap();
        resends += resent;
        assert_eq!(answered.len(), PER_SENDER, "sender {sender:?}");
        // Within each conversation, the sender's messages are numbered in
        // the order it sent them.
        for target in [Target::Group(first), Target::Group(second.id)] {
            let own: Vec<u64> = answered
                .iter()
                .filter(|(_, to, _)| *to == target)
                .map(|(_, _, seq)| *seq)
                .collect();
            assert!(
                own.windows(2).all(|pair| pair[0] < pair[1]),
                "{sender:?} {own:?}"
            );
            numbers.entry(target).or_default().extend(own);
        }
    }
    assert_eq!(resends, NODES * (PER_SENDER / 10));
    let per_conversation = u64::try_from(NODES * SENDERS_PER_NODE * PER_SENDER / 2).unwrap();
    for (target, conversation) in [
        (Target::Group(first), first_conversation),
        (Target::Group(second.id), second.conversation_id),
    ] {
        let mut seqs = numbers.remove(&target).unwrap();
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=per_conversation).collect::<Vec<_>>());
        let history = nodes[2]
            .history(conversation, None, Some(Seq::ZERO), 1000)
            .await
            .unwrap();
        assert_eq!(
            history.iter().map(|m| m.seq.0).collect::<Vec<_>>(),
            (1..=per_conversation).collect::<Vec<_>>()
        );
        assert!(history.iter().all(|m| m.sender_id != stranger));
    }
    // Each node ran its hooks in commit order: every conversation in
    // sequence order.
    for (node, log) in logs.iter().enumerate() {
        let log = log.lock().unwrap();
        assert_eq!(log.len(), SENDERS_PER_NODE * PER_SENDER, "node {node}");
        for conversation in [first_conversation, second.conversation_id] {
            let seqs: Vec<u64> = log
                .iter()
                .filter(|(c, _, duplicate)| *c == conversation && !duplicate)
                .map(|(_, seq, _)| *seq)
                .collect();
            assert!(
                seqs.windows(2).all(|pair| pair[0] < pair[1]),
                "node {node}: {seqs:?}"
            );
        }
    }
    close(nodes).await;
    database.drop_now().await;
}

/// A TCP proxy in front of MariaDB that can go silent: while frozen it
/// accepts connections and reads, but passes nothing on either way, like a
/// database host that stopped answering without closing anything.
struct SilenceableProxy {
    address: SocketAddr,
    frozen: watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
}

impl SilenceableProxy {
    async fn start(upstream: String) -> SilenceableProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (frozen, watcher) = watch::channel(false);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let watcher = watcher.clone();
                tokio::spawn(async move {
                    Self::thawed(&mut watcher.clone()).await;
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::spawn(Self::pump(client_read, server_write, watcher.clone()));
                    tokio::spawn(Self::pump(server_read, client_write, watcher));
                });
            }
        });
        SilenceableProxy {
            address,
            frozen,
            accept,
        }
    }

    async fn thawed(watcher: &mut watch::Receiver<bool>) {
        let _ = watcher.wait_for(|frozen| !frozen).await;
    }

    async fn pump(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        mut watcher: watch::Receiver<bool>,
    ) {
        let mut buffer = vec![0; 64 * 1024];
        loop {
            let read = match from.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(read) => read,
            };
            Self::thawed(&mut watcher).await;
            if to.write_all(&buffer[..read]).await.is_err() {
                return;
            }
        }
    }

    fn freeze(&self, frozen: bool) {
        self.frozen.send_replace(frozen);
    }
}

impl Drop for SilenceableProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// The bound a store call may take in the test below: the URL's timeout
/// and some slack for a loaded machine. The old behaviour was ~25 s.
const SILENT_TIMEOUT: Duration = Duration::from_secs(1);
const SILENT_BOUND: Duration = Duration::from_millis(2500);

async fn timed<T>(
    call: impl std::future::Future<Output = Result<T, StoreError>>,
) -> (Duration, Result<T, StoreError>) {
    let started = Instant::now();
    let result = call.await;
    (started.elapsed(), result)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_database_fails_every_call_within_the_timeout_then_recovers() {
    let Some(database) = common::MariaDb::create("silent").await else {
        return;
    };
    let proxy = SilenceableProxy::start(database.server_address()).await;
    let url = database.url_through(proxy.address, "?timeout=1");
    let store = chat_store::open(&url).await.unwrap();
    let alice = store.create_user("alice", "h", NOW).await.unwrap().id;
    let bob = store.create_user("bob", "h", NOW).await.unwrap().id;
    store
        .add_friend_request(alice, bob, None, NOW)
        .await
        .unwrap();
    let conversation = store
        .respond_friend_request(alice, bob, true, NOW)
        .await
        .unwrap()
        .unwrap();
    store
        .append_message(message(alice, Target::User(bob), "before"))
        .await
        .unwrap();

    proxy.freeze(true);
    let queued = async {
        let pending = store
            .queue_append(
                message(bob, Target::User(alice), "queued"),
                Box::new(|_: &Appended| {}),
            )
            .await?;
        pending.await
    };
    let (read, write, append, ack, queued) = tokio::join!(
        timed(store.user_by_id(alice)),
        timed(store.create_user("carol", "h", NOW)),
        timed(store.append_message(message(alice, Target::User(bob), "during"))),
        timed(store.ack(bob, conversation, Seq(1))),
        timed(queued),
    );
    let failures = [
        ("read", read.0, read.1.map(|_| ())),
        ("write", write.0, write.1.map(|_| ())),
        ("append", append.0, append.1.map(|_| ())),
        ("ack", ack.0, ack.1.map(|_| ())),
        ("queued append", queued.0, queued.1.map(|_| ())),
    ];
    for (call, took, result) in failures {
        assert!(
            matches!(
                result,
                Err(StoreError::TimedOut(_) | StoreError::Database(_))
            ),
            "{call} during the silence: {result:?}"
        );
        assert!(
            took < SILENT_BOUND,
            "{call} took {took:?} (timeout {SILENT_TIMEOUT:?})"
        );
    }

    // Back: the store reconnects by itself; the resend of the send that
    // timed out is stored (once) whether or not the first attempt was.
    proxy.freeze(false);
    let deadline = Instant::now() + Duration::from_secs(15);
    let resent = loop {
        match store
            .append_message(message(alice, Target::User(bob), "during"))
            .await
        {
            Ok(appended) => break appended,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("the store did not recover: {error:?}"),
        }
    };
    // Seq 2 or 3: the frozen proxy held bob's queued append and forwards
    // it when thawed, so it may commit before the resend and take 2.
    assert!(
        matches!(resent.message.seq, Seq(2) | Seq(3)),
        "{:?}",
        resent.message.seq
    );
    let again = store
        .append_message(message(alice, Target::User(bob), "during"))
        .await
        .unwrap();
    assert!(again.duplicate, "stored once");
    assert_eq!(again.message.seq, resent.message.seq);
    assert!(store.user_by_id(alice).await.unwrap().is_some());
    let last = resent.message.seq;
    assert_eq!(store.ack(bob, conversation, last).await.unwrap(), last);
    store.close().await;
    drop(proxy);
    database.drop_now().await;
}

/// As the SQLite test of the same name: accounts from before name keys get
/// them at open, clashes are kept apart and reported, not merged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_from_before_keys_get_them_and_clashes_stay_apart() {
    let Some(database) = common::MariaDb::create("name_keys").await else {
        return;
    };
    database.open().await.close().await;
    let raw = sqlx::MySqlPool::connect(&database.url()).await.unwrap();
    for name in ["Case", "case", "alice", "\u{430}lice", "bob"] {
        sqlx::query("INSERT INTO users (name, password_hash, created_at_ms) VALUES (?, 'h', 0)")
            .bind(name)
            .execute(&raw)
            .await
            .unwrap();
    }
    raw.close().await;
    let store = database.open().await;
    for name in ["Case", "case", "alice", "\u{430}lice", "bob"] {
        let found = store.user_by_name(name).await.unwrap().unwrap();
        assert_eq!(found.name, name);
    }
    assert_eq!(
        store.user_by_name("CASE").await.unwrap().unwrap().name,
        "Case"
    );
    assert_eq!(
        store.user_by_name("BOB").await.unwrap().unwrap().name,
        "bob"
    );
    for taken in ["CASE", "Alice", "Bob"] {
        assert!(matches!(
            store.create_user(taken, "h", NOW).await,
            Err(StoreError::Conflict(_))
        ));
    }
    store.close().await;
    database.drop_now().await;
}
