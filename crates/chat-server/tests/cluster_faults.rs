//! Faults under traffic in a three-node cluster: a node killed while
//! clients on every node keep sending, and Redis restarted while they do;
//! with in-process nodes behind nginx, and with real `chatd` processes behind
//! HAProxy (SIGKILL, a database that goes silent). Afterwards every message acknowledged to its sender must have reached
//! each of its recipients exactly once and in per-conversation order (as the
//! resilient client hands them to the application).

#[path = "common/cluster.rs"]
mod cluster;
#[path = "common/processes.rs"]
mod processes;
#[path = "common/tcp_proxy.rs"]
mod tcp_proxy;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chat_client::{Client, ClientOptions, Event, IntoUserRef};
use chat_proto::{
    ChatMessage, ConversationId, FriendAddRequest, FriendListRequest, FriendRespondRequest,
    GroupCreateRequest, GroupId, GroupJoinRequest, JoinPolicy, RegisterRequest, Seq, Target,
    UserId,
};
use cluster::{Cluster, PASSWORD};
use processes::{nodes_of, NodeProcess, NodeSpec};
use tokio::task::JoinHandle;

const SUITE: &str = "cluster_faults";
/// Users in the test: two per node, in three friend pairs that each span
/// two nodes, all in one group.
const USERS: usize = 6;
/// Messages each user sends during the traffic, alternating between its
/// friend and the group.
const MESSAGES_PER_USER: usize = 60;
/// The pause between one user's sends.
const SEND_INTERVAL: Duration = Duration::from_millis(40);
/// How long all recipients may take to have everything after the traffic.
const SETTLE: Duration = Duration::from_secs(20);

/// A message acknowledged to its sender, and who must receive it.
#[derive(Debug, Clone)]
struct Acked {
    conversation_id: ConversationId,
    seq: Seq,
    body: String,
    recipients: Vec<usize>,
}

/// One user: a resilient client, and what it has handed to the application.
struct Participant {
    name: String,
    id: UserId,
    home: usize,
    client: Arc<Client>,
    received: Arc<Mutex<Vec<ChatMessage>>>,
    reconnects: Arc<Mutex<Vec<Instant>>>,
    collector: JoinHandle<()>,
}

/// The users, their friendships and group, and the ledger of acknowledged
/// sends.
struct Traffic {
    participants: Vec<Participant>,
    group: GroupId,
    acked: Arc<Mutex<Vec<Acked>>>,
    failed_sends: Arc<Mutex<u32>>,
}

/// Friend of user `index`: pairs (0,1), (2,3), (4,5).
fn friend_of(index: usize) -> usize {
    index ^ 1
}

impl Traffic {
    /// Registers the users, user `i` homed on node `i % 3` where the
    /// topology lets clients choose, makes the friends and the group.
    async fn set_up(cluster: &impl Topology) -> Traffic {
        let mut participants = Vec::new();
        for index in 0..USERS {
            // Every cluster has a database of its own: names need not be
            // unique beyond it.
            let name = format!("user{index}");
            let mut options = ClientOptions::with_addresses(cluster.addresses(index % 3));
            options.connection.request_timeout = Duration::from_secs(10);
            let client = Arc::new(Client::connect(options).await.expect("connects"));
            client
                .call(RegisterRequest {
                    name: name.to_owned(),
                    password: PASSWORD.to_owned(),
                })
                .await
                .expect("registers");
            let login = client
                .login(name.as_str(), PASSWORD)
                .await
                .expect("logs in");
            let home = cluster.home_of(index % 3, login.user.id).await;
            let received = Arc::new(Mutex::new(Vec::new()));
            let reconnects = Arc::new(Mutex::new(Vec::new()));
            let collector = tokio::spawn(collect(
                client.clone(),
                received.clone(),
                reconnects.clone(),
            ));
            participants.push(Participant {
                name,
                id: login.user.id,
                home,
                client,
                received,
                reconnects,
                collector,
            });
        }
        for index in (0..USERS).step_by(2) {
            let (a, b) = (&participants[index], &participants[friend_of(index)]);
            a.client
                .call(FriendAddRequest {
                    user: b.name.as_str().into_user_ref(),
                    message: None,
                })
                .await
                .expect("friend request");
            b.client
                .call(FriendRespondRequest {
                    user: a.name.as_str().into_user_ref(),
                    accept: true,
                })
                .await
                .expect("accepts");
        }
        let group = participants[0]
            .client
            .call(GroupCreateRequest {
                name: "all".to_owned(),
                description: "".to_owned(),
                join_policy: JoinPolicy::Open,
            })
            .await
            .expect("creates the group")
            .group
            .id;
        for participant in &participants[1..] {
            participant
                .client
                .call(GroupJoinRequest { group_id: group })
                .await
                .expect("joins");
        }
        let traffic = Traffic {
            participants,
            group,
            acked: Arc::default(),
            failed_sends: Arc::default(),
        };
        traffic.greet().await;
        traffic
    }

    /// The users have talked before: each has seen a message from the other
    /// side of both its conversations, so every client starts the traffic
    /// with a position in each of them.
    async fn greet(&self) {
        let group = Target::Group(self.group);
        for index in 0..USERS {
            let friend = friend_of(index);
            let to_friend = Target::User(self.participants[friend].id);
            self.greet_one(index, to_friend, &[friend]).await;
        }
        let others: Vec<usize> = (1..USERS).collect();
        self.greet_one(0, group, &others).await;
        self.greet_one(1, group, &[0]).await;
    }

    async fn greet_one(&self, from: usize, to: Target, until_seen_by: &[usize]) {
        let body = format!("hello from {from} to {to:?}");
        self.participants[from]
            .client
            .send(to, &body)
            .await
            .expect("greets");
        let started = Instant::now();
        for &index in until_seen_by {
            while !self.participants[index]
                .received
                .lock()
                .unwrap()
                .iter()
                .any(|message| message.body == body)
            {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "user {index} did not get {body:?}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    /// Starts every user sending [`MESSAGES_PER_USER`] messages; the
    /// returned handles finish with the traffic.
    fn start_sending(&self) -> Vec<JoinHandle<()>> {
        (0..USERS)
            .map(|index| {
                let client = self.participants[index].client.clone();
                let name = self.participants[index].name.clone();
                let friend_id = self.participants[friend_of(index)].id;
                let group = self.group;
                let acked = self.acked.clone();
                let failed = self.failed_sends.clone();
                tokio::spawn(async move {
                    for n in 0..MESSAGES_PER_USER {
                        let to_group = n % 2 == 1;
                        send(
                            &client,
                            index,
                            if to_group {
                                Target::Group(group)
                            } else {
                                Target::User(friend_id)
                            },
                            format!("{name} #{n}"),
                            &acked,
                            &failed,
                        )
                        .await;
                        tokio::time::sleep(SEND_INTERVAL).await;
                    }
                })
            })
            .collect()
    }

    /// One more message from every user to its friend and to the group.
    /// Pushes lost in transit during a fault leave a gap that the next
    /// message in the conversation makes the client fill from the store.
    async fn final_round(&self) {
        for (index, participant) in self.participants.iter().enumerate() {
            let friend = Target::User(self.participants[friend_of(index)].id);
            for (target, what) in [(friend, "friend"), (Target::Group(self.group), "group")] {
                let body = format!("{} last to {what}", participant.name);
                send(
                    &participant.client,
                    index,
                    target,
                    body,
                    &self.acked,
                    &self.failed_sends,
                )
                .await;
            }
        }
    }

    /// Waits until every recipient has every acknowledged message meant for
    /// it, then checks exactly-once, order and content.
    async fn verify(&self) {
        let acked = self.acked.lock().unwrap().clone();
        let expected: Vec<HashMap<(ConversationId, Seq), String>> = (0..USERS)
            .map(|index| {
                acked
                    .iter()
                    .filter(|message| message.recipients.contains(&index))
                    .map(|message| ((message.conversation_id, message.seq), message.body.clone()))
                    .collect()
            })
            .collect();
        let started = Instant::now();
        loop {
            let missing: usize = (0..USERS)
                .map(|index| {
                    let received = self.participants[index].received.lock().unwrap();
                    let have: HashSet<(ConversationId, Seq)> = received
                        .iter()
                        .map(|message| (message.conversation_id, message.seq))
                        .collect();
                    expected[index]
                        .keys()
                        .filter(|key| !have.contains(key))
                        .count()
                })
                .sum();
            if missing == 0 {
                break;
            }
            assert!(
                started.elapsed() < SETTLE,
                "{missing} acknowledged deliveries still missing after {SETTLE:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for (index, participant) in self.participants.iter().enumerate() {
            let received = participant.received.lock().unwrap().clone();
            let mut last: HashMap<ConversationId, Seq> = HashMap::new();
            for message in &received {
                let previous = last.insert(message.conversation_id, message.seq);
                assert!(
                    previous.is_none_or(|previous| previous < message.seq),
                    "user {index}: {} #{} after #{} (duplicate or out of order)",
                    message.conversation_id,
                    message.seq,
                    previous.unwrap_or(Seq::ZERO),
                );
                if let Some(body) = expected[index].get(&(message.conversation_id, message.seq)) {
                    assert_eq!(&message.body, body, "user {index}: content");
                }
                assert_ne!(
                    message.sender_id, participant.id,
                    "user {index}: own send {} #{} {:?} came back as an event",
                    message.conversation_id, message.seq, message.body
                );
            }
        }
    }

    fn acked_count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    async fn close(self) {
        for participant in self.participants {
            participant.collector.abort();
            if let Ok(client) = Arc::try_unwrap(participant.client) {
                client.close().await;
            }
        }
    }
}

/// Sends one message, recording it if acknowledged.
async fn send(
    client: &Client,
    sender: usize,
    target: Target,
    body: String,
    acked: &Mutex<Vec<Acked>>,
    failed: &Mutex<u32>,
) {
    let recipients: Vec<usize> = match target {
        Target::User(_) => vec![friend_of(sender)],
        Target::Group(_) => (0..USERS).filter(|&index| index != sender).collect(),
    };
    match tokio::time::timeout(Duration::from_secs(20), client.send(target, &body)).await {
        Ok(Ok(response)) => acked.lock().unwrap().push(Acked {
            conversation_id: response.conversation_id,
            seq: response.seq,
            body,
            recipients,
        }),
        Ok(Err(error)) => {
            eprintln!("send by user {sender} not acknowledged: {error}");
            *failed.lock().unwrap() += 1;
        }
        Err(_) => {
            eprintln!("send by user {sender} not acknowledged in time");
            *failed.lock().unwrap() += 1;
        }
    }
}

/// Takes a client's events as an application would: every message, in the
/// order handed out.
async fn collect(
    client: Arc<Client>,
    received: Arc<Mutex<Vec<ChatMessage>>>,
    reconnects: Arc<Mutex<Vec<Instant>>>,
) {
    while let Some(event) = client.next_event().await {
        match event {
            Event::Message(message) => received.lock().unwrap().push(message),
            Event::Reconnected { .. } => reconnects.lock().unwrap().push(Instant::now()),
            Event::GaveUp { error } => panic!("a client gave up reconnecting: {error}"),
            _ => {}
        }
    }
}

/// Where the test's clients connect, and where each landed.
trait Topology {
    /// The addresses a client meant for node `home` tries, in order.
    fn addresses(&self, home: usize) -> Vec<String>;
    /// The node `user`, meant for `home`, is connected to.
    async fn home_of(&self, home: usize, user: UserId) -> usize;
}

impl Topology for Cluster {
    /// The node itself, then nginx (when that node is gone).
    fn addresses(&self, home: usize) -> Vec<String> {
        vec![self.node(home).to_string(), self.proxy().to_string()]
    }

    async fn home_of(&self, home: usize, _user: UserId) -> usize {
        home
    }
}

/// Three `chatd` processes behind HAProxy; clients only reach the proxy,
/// which places them.
struct ProcessCluster {
    nodes: Vec<Option<NodeProcess>>,
    front: std::net::SocketAddr,
    redis: String,
    prefix: String,
    /// In front of MariaDB, when the test makes the database misbehave.
    database_proxy: Option<tcp_proxy::SilentProxy>,
    _haproxy: processes::Haproxy,
    _keys: cluster::RedisKeys,
    _database: cluster::TestDatabase,
}

impl ProcessCluster {
    /// Three nodes on `redis`; with `proxied_database`, the nodes reach
    /// MariaDB through a proxy the test controls, with a 1 s store timeout.
    async fn start(
        services: &cluster::Services,
        redis: &str,
        proxied_database: bool,
    ) -> ProcessCluster {
        let haproxy = cluster::find_binary("haproxy").expect("checked by the caller");
        let database = cluster::TestDatabase::create(&services.mysql).await;
        let prefix = format!("{}:", cluster::unique("faults_"));
        let keys = cluster::RedisKeys::new(redis, &prefix);
        let mut store = database.url();
        let mut database_proxy = None;
        if proxied_database {
            let authority = services.mysql.rsplit('@').next().unwrap().to_owned();
            let upstream = tokio::net::lookup_host(&authority)
                .await
                .unwrap()
                .next()
                .unwrap();
            let proxy = tcp_proxy::SilentProxy::start(upstream).await;
            store = format!(
                "{}?timeout=1",
                store.replace(&authority, &proxy.addr.to_string())
            );
            database_proxy = Some(proxy);
        }
        let mut nodes = Vec::new();
        let mut addresses = Vec::new();
        for index in 0..3 {
            let (chat, http) = NodeProcess::addresses();
            let spec = NodeSpec {
                index,
                store: &store,
                redis,
                prefix: &prefix,
                extra: &[],
            };
            nodes.push(Some(NodeProcess::spawn(&spec, chat, http).await));
            addresses.push((chat, http));
        }
        let front = format!("127.0.0.1:{}", cluster::free_port())
            .parse()
            .unwrap();
        let web = format!("127.0.0.1:{}", cluster::free_port())
            .parse()
            .unwrap();
        let haproxy = processes::start_haproxy(&haproxy, &addresses, front, web).await;
        // Let the first health checks pass.
        tokio::time::sleep(Duration::from_secs(2)).await;
        ProcessCluster {
            nodes,
            front,
            redis: redis.to_owned(),
            prefix,
            database_proxy,
            _haproxy: haproxy,
            _keys: keys,
            _database: database,
        }
    }

    /// SIGKILL, as a crash or the OOM killer would.
    fn kill(&mut self, index: usize) {
        if let Some(node) = self.nodes[index].take() {
            node.signal("-KILL");
        }
    }
}

impl Topology for ProcessCluster {
    fn addresses(&self, _home: usize) -> Vec<String> {
        vec![self.front.to_string()]
    }

    async fn home_of(&self, _home: usize, user: UserId) -> usize {
        let nodes = nodes_of(&self.redis, &self.prefix, user).await;
        let node = nodes.first().expect("the user is registered on a node");
        node.trim_start_matches("node-").parse().unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_process_killed_with_sigkill_loses_no_acknowledged_message() {
    let Some(services) = cluster::Services::find(SUITE).await else {
        return;
    };
    if cluster::need_haproxy(SUITE).is_none() {
        return;
    }
    let mut cluster = ProcessCluster::start(&services, &services.redis, false).await;
    let traffic = Traffic::set_up(&cluster).await;
    let victim = traffic.participants[0].home;
    let senders = traffic.start_sending();
    while traffic.acked_count() < USERS * MESSAGES_PER_USER / 4 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let at = traffic.acked_count();
    let killed_at = Instant::now();
    cluster.kill(victim);
    eprintln!("SIGKILL to node {victim} after {at} acknowledged sends");
    for sender in senders {
        sender.await.expect("sender task");
    }
    for participant in &traffic.participants {
        let reconnects = participant.reconnects.lock().unwrap().clone();
        if participant.home == victim {
            let back = reconnects.first().expect("reconnected");
            eprintln!(
                "{} (on the killed node) reconnected and resynced after {:?}",
                participant.name,
                back.duration_since(killed_at)
            );
        } else {
            assert!(
                reconnects.is_empty(),
                "{} kept its connection",
                participant.name
            );
        }
    }
    traffic.final_round().await;
    traffic.verify().await;
    assert_eq!(*traffic.failed_sends.lock().unwrap(), 0);
    traffic.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_then_resetting_database_under_traffic_loses_no_acknowledged_message() {
    let Some(services) = cluster::Services::find(SUITE).await else {
        return;
    };
    if cluster::need_haproxy(SUITE).is_none() {
        return;
    }
    let cluster = ProcessCluster::start(&services, &services.redis, true).await;
    let traffic = Traffic::set_up(&cluster).await;
    let proxy = cluster.database_proxy.as_ref().expect("proxied");
    // A client of its own, to time a request that needs the database.
    let probe = chat_client::Connection::connect_url(
        &cluster.front.to_string(),
        chat_client::ConnectionOptions::default(),
    )
    .await
    .expect("connects");
    probe.login("user0", PASSWORD).await.expect("logs in");
    let senders = traffic.start_sending();
    while traffic.acked_count() < USERS * MESSAGES_PER_USER / 4 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The database stops answering but keeps its connections open.
    proxy.set_silent(true);
    let silent_at = Instant::now();
    let answer = probe.call(FriendListRequest {}).await;
    let waited = silent_at.elapsed();
    assert!(
        matches!(&answer, Err(error) if error.status() == Some(chat_proto::Status::Unavailable)),
        "a request needing the silent database: {answer:?}"
    );
    assert!(
        waited < Duration::from_millis(2500),
        "unavailable came after {waited:?}, beyond the 1 s store bound"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let acked_before = traffic.acked_count();
    proxy.set_silent(false);
    eprintln!(
        "database silent for {:?}: `unavailable` after {waited:?}",
        silent_at.elapsed()
    );
    // Then it drops every connection, as a restart would.
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.reset_all();
    for sender in senders {
        sender.await.expect("sender task");
    }
    assert!(traffic.acked_count() > acked_before, "sends resumed");
    traffic.final_round().await;
    traffic.verify().await;
    eprintln!(
        "{} sends acknowledged, {} not (the client's repeats ran out)",
        traffic.acked_count(),
        traffic.failed_sends.lock().unwrap()
    );
    traffic.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_under_real_processes_loses_no_acknowledged_message() {
    let Some(services) = cluster::Services::find(SUITE).await else {
        return;
    };
    if cluster::need_haproxy(SUITE).is_none() {
        return;
    }
    let Some(redis_server) = cluster::need_redis_server(SUITE) else {
        return;
    };
    let mut redis = cluster::RedisProcess::start(&redis_server).await;
    let cluster = ProcessCluster::start(&services, &redis.url(), false).await;
    let traffic = Traffic::set_up(&cluster).await;
    let senders = traffic.start_sending();
    while traffic.acked_count() < USERS * MESSAGES_PER_USER / 5 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    redis.kill();
    let killed_at = traffic.acked_count();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let during = traffic.acked_count() - killed_at;
    redis.restart().await;
    eprintln!("Redis down for 1.5 s; {during} sends acknowledged meanwhile");
    assert!(during > 0, "nodes keep serving while Redis is down");
    for sender in senders {
        sender.await.expect("sender task");
    }
    traffic.final_round().await;
    traffic.verify().await;
    assert_eq!(*traffic.failed_sends.lock().unwrap(), 0);
    traffic.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_during_traffic_loses_no_acknowledged_message() {
    let Some(services) = cluster::Services::find(SUITE).await else {
        return;
    };
    let mut cluster = Cluster::start(&services, &services.redis, 3).await;
    let traffic = Traffic::set_up(&cluster).await;
    let started = Instant::now();
    let senders = traffic.start_sending();

    // Kill node 1 once the traffic is flowing. Users 1 and 4 live there.
    while traffic.acked_count() < USERS * MESSAGES_PER_USER / 4 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let at = traffic.acked_count();
    let killed_at = Instant::now();
    cluster.kill(1).await;
    eprintln!("killed node 1 after {at} acknowledged sends");
    for sender in senders {
        sender.await.expect("sender task");
    }
    // Whoever was on node 1 came back through nginx to another node, and
    // nobody else had to.
    for participant in &traffic.participants {
        let reconnects = participant.reconnects.lock().unwrap().clone();
        if participant.home == 1 {
            let back = reconnects.first().expect("reconnected");
            eprintln!(
                "{} reconnected and resynced {:?} after the kill",
                participant.name,
                back.duration_since(killed_at)
            );
        } else {
            assert!(
                reconnects.is_empty(),
                "{} kept its connection",
                participant.name
            );
        }
    }
    traffic.final_round().await;
    traffic.verify().await;
    let failed = *traffic.failed_sends.lock().unwrap();
    eprintln!(
        "{} sends acknowledged, {failed} not, verified in {:?}; nginx: {}",
        traffic.acked_count(),
        started.elapsed(),
        cluster
            .proxy_log()
            .lines()
            .filter(|line| line.contains("upstream"))
            .count(),
    );
    assert_eq!(
        failed, 0,
        "the resilient client retries sends until they land"
    );
    traffic.close().await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_during_traffic_loses_no_acknowledged_message() {
    let Some(services) = cluster::Services::find(SUITE).await else {
        return;
    };
    let Some(redis_server) = cluster::need_redis_server(SUITE) else {
        return;
    };
    let mut redis = cluster::RedisProcess::start(&redis_server).await;
    let cluster = Cluster::start(&services, &redis.url(), 3).await;
    let traffic = Traffic::set_up(&cluster).await;
    let senders = traffic.start_sending();

    while traffic.acked_count() < USERS * MESSAGES_PER_USER / 5 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    redis.kill();
    let killed_at = traffic.acked_count();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let during = traffic.acked_count() - killed_at;
    redis.restart().await;
    eprintln!("Redis down for 1.2 s; {during} sends acknowledged meanwhile");
    assert!(during > 0, "nodes keep serving while Redis is down");
    for sender in senders {
        sender.await.expect("sender task");
    }
    // Every node is back: each user is registered again where it is.
    for participant in &traffic.participants {
        cluster
            .wait_registered(participant.id, participant.home, Duration::from_secs(15))
            .await;
    }
    traffic.final_round().await;
    traffic.verify().await;
    assert_eq!(*traffic.failed_sends.lock().unwrap(), 0);
    for participant in &traffic.participants {
        assert!(
            participant.reconnects.lock().unwrap().is_empty(),
            "a Redis outage does not disconnect clients"
        );
    }
    traffic.close().await;
    cluster.shutdown().await;
}
