//! Shared by the cluster tests: finding the services they need (MariaDB,
//! Redis, nginx), private Redis processes to kill and restart, an nginx
//! stream proxy in a temporary directory, and a cluster of in-process nodes
//! behind it.
//!
//! A missing service skips the test with a loud `SKIPPED:` line, unless
//! `CHATD_TEST_REQUIRE_SERVICES=1`, which turns it into a failure.

#![allow(dead_code)]

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use chat_client::IntoUserRef;
use chat_proto::{
    ChatMessage, FriendAddRequest, FriendRespondRequest, LoginResponse, Push, RegisterRequest,
};
use chat_server::{Config, RunningServer};
use sqlx::Connection as _;
use tempfile::TempDir;

/// The password every test user has.
pub const PASSWORD: &str = "correct horse battery";

/// A name no other test (in this or a concurrent run) uses.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    format!(
        "{prefix}{}_{:x}_{}",
        std::process::id(),
        nanos,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Whether a missing service must fail the test rather than skip it.
pub fn services_required() -> bool {
    std::env::var("CHATD_TEST_REQUIRE_SERVICES").is_ok_and(|value| value == "1")
}

/// Skips (returns) or, when services are required, fails.
fn missing(suite: &str, service: &str, location: &str) {
    assert!(
        !services_required(),
        "{suite} needs {service} at {location} (CHATD_TEST_REQUIRE_SERVICES=1)"
    );
    // Straight to the process's stderr: the test harness captures
    // `eprintln!` of passing tests, and a skip must be seen.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {suite} needs {service} at {location}"
    );
}

/// The Redis URL of the shared test Redis, if it answers.
pub async fn need_redis(suite: &str) -> Option<String> {
    let url = std::env::var("CHATD_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    if redis_answers(&url).await {
        Some(url)
    } else {
        missing(suite, "Redis", &url);
        None
    }
}

/// The admin URL of the test MariaDB (no database), if it answers.
pub async fn need_mysql(suite: &str) -> Option<String> {
    let url = std::env::var("CHATD_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".to_owned());
    let url = url.trim_end_matches('/').to_owned();
    let reachable =
        tokio::time::timeout(Duration::from_secs(5), sqlx::MySqlConnection::connect(&url)).await;
    match reachable {
        Ok(Ok(connection)) => {
            let _ = connection.close().await;
            Some(url)
        }
        _ => {
            missing(suite, "MariaDB", &url);
            None
        }
    }
}

/// The nginx binary, if installed with the stream module.
pub fn need_nginx(suite: &str) -> Option<Nginx> {
    let binary = find_binary("nginx");
    match binary {
        Some(binary) => match stream_module(&binary) {
            Ok(load) => Some(Nginx {
                binary,
                load_module: load,
            }),
            Err(why) => {
                missing(suite, "nginx with the stream module", &why);
                None
            }
        },
        None => {
            missing(suite, "nginx", "PATH or /usr/sbin");
            None
        }
    }
}

/// The haproxy binary, for the tests that run real processes behind it.
pub fn need_haproxy(suite: &str) -> Option<PathBuf> {
    let binary = find_binary("haproxy");
    if binary.is_none() {
        missing(suite, "haproxy", "PATH or /usr/sbin");
    }
    binary
}

/// The redis-server binary, to run private Redis processes.
pub fn need_redis_server(suite: &str) -> Option<PathBuf> {
    let binary = find_binary("redis-server");
    if binary.is_none() {
        missing(suite, "redis-server", "PATH or /usr/bin");
    }
    binary
}

/// Whether a Redis at `url` answers PING within a second.
pub async fn redis_answers(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let ping = async {
        let mut connection = client.get_multiplexed_async_connection().await.ok()?;
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
            .ok()
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), ping).await,
        Ok(Some(_))
    )
}

pub fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Whether nginx has the stream module built in (`Ok(None)`), as a module
/// to load (`Ok(Some(path))`), or not at all (`Err`).
fn stream_module(binary: &Path) -> Result<Option<PathBuf>, String> {
    let output = Command::new(binary)
        .arg("-V")
        .output()
        .map_err(|error| format!("{}: {error}", binary.display()))?;
    // nginx prints its build flags to stderr.
    let flags = String::from_utf8_lossy(&output.stderr).into_owned();
    if flags.contains("--with-stream ") || flags.ends_with("--with-stream") {
        return Ok(None);
    }
    if !flags.contains("--with-stream=dynamic") {
        return Err(format!("{} (built without stream)", binary.display()));
    }
    let modules = flags
        .split_whitespace()
        .find_map(|flag| flag.strip_prefix("--modules-path="))
        .unwrap_or("/usr/lib/nginx/modules");
    let module = Path::new(modules).join("ngx_stream_module.so");
    if module.is_file() {
        Ok(Some(module))
    } else {
        Err(format!(
            "{} (install libnginx-mod-stream)",
            module.display()
        ))
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

/// Waits until something accepts TCP connections on `addr`.
pub async fn wait_listening(addr: SocketAddr, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not start listening on {addr}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The keys of one test's prefix in a shared Redis, deleted when dropped
/// (also when the test fails), so test runs leave nothing behind.
pub struct RedisKeys {
    url: String,
    prefix: String,
}

impl RedisKeys {
    /// Takes charge of every key under `prefix` at `url`.
    pub fn new(url: &str, prefix: &str) -> RedisKeys {
        RedisKeys {
            url: url.to_owned(),
            prefix: prefix.to_owned(),
        }
    }
}

impl Drop for RedisKeys {
    fn drop(&mut self) {
        use redis::Commands as _;
        // Drop cannot await: a short blocking connection does it.
        let Ok(client) = redis::Client::open(self.url.as_str()) else {
            return;
        };
        let Ok(mut connection) = client.get_connection_with_timeout(Duration::from_secs(1)) else {
            return;
        };
        let keys: Vec<String> = match connection.scan_match(format!("{}*", self.prefix)) {
            Ok(keys) => keys.collect(),
            Err(_) => return,
        };
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = connection.del(keys);
        }
    }
}

/// A database of its own on the test MariaDB, dropped at the end.
pub struct TestDatabase {
    admin_url: String,
    name: String,
}

impl TestDatabase {
    /// Creates a fresh, uniquely named database.
    pub async fn create(admin_url: &str) -> TestDatabase {
        let name = unique("chat_cluster_");
        let mut connection = sqlx::MySqlConnection::connect(admin_url)
            .await
            .expect("connects to MariaDB");
        sqlx::query(&format!("CREATE DATABASE `{name}`"))
            .execute(&mut connection)
            .await
            .expect("creates the test database");
        let _ = connection.close().await;
        TestDatabase {
            admin_url: admin_url.to_owned(),
            name,
        }
    }

    /// The store URL of the database.
    pub fn url(&self) -> String {
        format!("{}/{}", self.admin_url, self.name)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs outside async code (or while unwinding), so the DROP
        // DATABASE gets a small runtime on a thread of its own.
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut connection = sqlx::MySqlConnection::connect(&admin_url).await.ok()?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS `{name}`"))
                    .execute(&mut connection)
                    .await
                    .ok()?;
                connection.close().await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

/// A redis-server of the test's own, on a free port, without persistence,
/// so it can be killed and restarted without touching the shared Redis.
pub struct RedisProcess {
    binary: PathBuf,
    port: u16,
    dir: TempDir,
    child: Option<Child>,
}

impl RedisProcess {
    /// Starts one and waits until it answers.
    pub async fn start(binary: &Path) -> RedisProcess {
        let mut redis = RedisProcess {
            binary: binary.to_owned(),
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
        };
        redis.spawn().await;
        redis
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it at once (SIGKILL): every key and connection is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again, empty, on the same port.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    async fn spawn(&mut self) {
        let child = Command::new(&self.binary)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !redis_answers(&self.url()).await {
            assert!(
                Instant::now() < deadline,
                "private redis-server did not come up"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// nginx, found and able to proxy TCP.
pub struct Nginx {
    binary: PathBuf,
    load_module: Option<PathBuf>,
}

impl Nginx {
    /// Starts nginx in the foreground with a generated stream config that
    /// balances a free port over `upstreams`; waits until it listens.
    pub async fn start(&self, upstreams: &[SocketAddr]) -> NginxProcess {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let config = self.config(dir.path(), port, upstreams);
        let config_path = dir.path().join("nginx.conf");
        std::fs::write(&config_path, config).expect("writes nginx.conf");
        let child = Command::new(&self.binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
        let mut process = NginxProcess {
            addr,
            dir,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            if let Some(child) = process.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("nginx exited with {status}: {}", process.error_log());
                }
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not listen: {}",
                process.error_log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        process
    }

    /// The same shape as deploy/nginx/chat.conf, with the paths of a
    /// temporary directory and short failure timeouts for tests.
    fn config(&self, dir: &Path, port: u16, upstreams: &[SocketAddr]) -> String {
        let load = self
            .load_module
            .as_ref()
            .map(|module| format!("load_module {};\n", module.display()))
            .unwrap_or_default();
        let servers: String = upstreams
            .iter()
            .map(|addr| format!("        server {addr} max_fails=1 fail_timeout=2s;\n"))
            .collect();
        format!(
            "{load}daemon off;\n\
             worker_processes 1;\n\
             pid {dir}/nginx.pid;\n\
             error_log {dir}/error.log info;\n\
             events {{ worker_connections 1024; }}\n\
             stream {{\n\
             \x20   upstream chatd {{\n\
             \x20       least_conn;\n\
             {servers}\
             \x20   }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       proxy_pass chatd;\n\
             \x20       proxy_connect_timeout 1s;\n\
             \x20       proxy_timeout 120s;\n\
             \x20   }}\n\
             }}\n",
            dir = dir.display(),
        )
    }
}

/// A running nginx of a test.
pub struct NginxProcess {
    addr: SocketAddr,
    dir: TempDir,
    child: Option<Child>,
}

impl NginxProcess {
    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// nginx's error log so far, for failure messages.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for NginxProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM, not SIGKILL: the master then stops its worker too,
            // where a killed master would leave the worker behind.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Three (or more) in-process nodes on one fresh database and one Redis,
/// behind nginx.
pub struct Cluster {
    nodes: Vec<Option<RunningServer>>,
    addrs: Vec<SocketAddr>,
    configs: Vec<Config>,
    nginx: NginxProcess,
    redis_url: String,
    prefix: String,
    // After the nodes: they write no more keys once stopped.
    _keys: RedisKeys,
    // Dropped last: the nodes and nginx go first.
    database: TestDatabase,
}

/// What a cluster test needs, found.
pub struct Services {
    /// MariaDB admin URL.
    pub mysql: String,
    /// The shared Redis URL.
    pub redis: String,
    /// nginx.
    pub nginx: Nginx,
}

impl Services {
    /// Finds MariaDB, Redis and nginx; `None` (after the SKIPPED line) if
    /// one is missing.
    pub async fn find(suite: &str) -> Option<Services> {
        let mysql = need_mysql(suite).await;
        let redis = need_redis(suite).await;
        let nginx = need_nginx(suite);
        Some(Services {
            mysql: mysql?,
            redis: redis?,
            nginx: nginx?,
        })
    }
}

impl Cluster {
    /// Starts `count` nodes sharing a fresh database and `redis_url` (with a
    /// key prefix of their own), heartbeating every second, and nginx in
    /// front of them.
    pub async fn start(services: &Services, redis_url: &str, count: usize) -> Cluster {
        let database = TestDatabase::create(&services.mysql).await;
        let prefix = format!("{}:", unique("chat_test_"));
        let mut nodes = Vec::new();
        let mut addrs = Vec::new();
        let mut configs = Vec::new();
        for index in 0..count {
            let config = Config {
                listen: "127.0.0.1:0".to_owned(),
                store: database.url(),
                redis: Some(redis_url.to_owned()),
                node_id: Some(format!("node-{index}")),
                redis_prefix: prefix.clone(),
                heartbeat_secs: 1,
                // Tests fire requests quickly and register many users from
                // one address; the limits have their own tests.
                rate_limit_per_sec: 0,
                registrations_per_ip_per_hour: 0,
                registrations_per_minute: 0,
                shutdown_grace_secs: 5,
                http_listen: "127.0.0.1:0".to_owned(),
                ..Config::default()
            };
            let node = chat_server::start(config.clone())
                .await
                .expect("node starts");
            addrs.push(node.local_addr());
            configs.push(Config {
                listen: node.local_addr().to_string(),
                ..config
            });
            nodes.push(Some(node));
        }
        let nginx = services.nginx.start(&addrs).await;
        Cluster {
            nodes,
            addrs,
            configs,
            nginx,
            redis_url: redis_url.to_owned(),
            _keys: RedisKeys::new(redis_url, &prefix),
            prefix,
            database,
        }
    }

    /// The id node `index` runs under.
    pub fn node_id(&self, index: usize) -> String {
        format!("node-{index}")
    }

    /// Waits until Redis lists `user` as connected to node `index` (the
    /// node has registered the user's session), at most `within`.
    pub async fn wait_registered(&self, user: chat_proto::UserId, index: usize, within: Duration) {
        let key = format!("{}user:{}:nodes", self.prefix, user.0);
        let node = self.node_id(index);
        let deadline = Instant::now() + within;
        loop {
            if let Ok(client) = redis::Client::open(self.redis_url.as_str()) {
                if let Ok(Ok(mut connection)) = tokio::time::timeout(
                    Duration::from_secs(1),
                    client.get_multiplexed_async_connection(),
                )
                .await
                {
                    let member: Result<bool, _> = redis::cmd("SISMEMBER")
                        .arg(&key)
                        .arg(&node)
                        .query_async(&mut connection)
                        .await;
                    if member == Ok(true) {
                        return;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "user {user} not registered on {node} within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Where node `index` listens.
    pub fn node(&self, index: usize) -> SocketAddr {
        self.addrs[index]
    }

    /// Where nginx listens.
    pub fn proxy(&self) -> SocketAddr {
        self.nginx.addr()
    }

    /// nginx's error log, for failure messages.
    pub fn proxy_log(&self) -> String {
        self.nginx.error_log()
    }

    /// Kills node `index` as a crash would: no goodbye to clients or Redis.
    pub async fn kill(&mut self, index: usize) {
        if let Some(node) = self.nodes[index].take() {
            node.abort().await;
        }
    }

    /// Starts node `index` again on its address, after [`Cluster::kill`].
    pub async fn restart(&mut self, index: usize) {
        assert!(self.nodes[index].is_none(), "node {index} is running");
        let node = chat_server::start(self.configs[index].clone())
            .await
            .expect("node restarts");
        self.nodes[index] = Some(node);
    }

    /// Stops every node gracefully.
    pub async fn shutdown(mut self) {
        for node in self.nodes.iter_mut() {
            if let Some(node) = node.take() {
                node.shutdown().await.expect("clean shutdown");
            }
        }
    }
}

/// How long a test waits for a push that should come.
pub const PUSH_WAIT: Duration = Duration::from_secs(5);

/// Registers `name` and logs in on a new connection to `addr`.
pub async fn user_on(addr: SocketAddr, name: &str) -> (chat_client::Connection, LoginResponse) {
    let connection = chat_client::Connection::connect(addr)
        .await
        .expect("connects");
    connection
        .call(RegisterRequest {
            name: name.to_owned(),
            password: PASSWORD.to_owned(),
        })
        .await
        .expect("registers");
    let login = connection.login(name, PASSWORD).await.expect("logs in");
    (connection, login)
}

/// Logs an existing user in on a new connection to `addr`.
pub async fn login_on(addr: SocketAddr, name: &str) -> (chat_client::Connection, LoginResponse) {
    let connection = chat_client::Connection::connect(addr)
        .await
        .expect("connects");
    let login = connection.login(name, PASSWORD).await.expect("logs in");
    (connection, login)
}

/// Waits for the next push that `matches`, skipping any other, failing
/// after [`PUSH_WAIT`].
pub async fn push_where(
    connection: &chat_client::Connection,
    what: &str,
    matches: impl Fn(&Push) -> bool,
) -> Push {
    let deadline = tokio::time::Instant::now() + PUSH_WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match connection.next_push_timeout(left).await {
            Some(push) if matches(&push) => return push,
            Some(_) => {}
            None => panic!("no {what} arrived within {PUSH_WAIT:?}"),
        }
    }
}

/// Waits for the pushed message with this body.
pub async fn message_with(connection: &chat_client::Connection, body: &str) -> ChatMessage {
    match push_where(
        connection,
        body,
        |push| matches!(push, Push::PushMessage(message) if message.body == body),
    )
    .await
    {
        Push::PushMessage(message) => message,
        _ => unreachable!("matched a message"),
    }
}

/// Asserts no chat message arrives for a short while (other pushes are
/// ignored).
pub async fn no_message(connection: &chat_client::Connection) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match connection.next_push_timeout(left).await {
            Some(Push::PushMessage(message)) => panic!("unexpected message {message:?}"),
            Some(_) => {}
            None => return,
        }
    }
}

/// Makes `a` and `b` friends (`a` asks, `b` accepts), across whatever nodes
/// they are on.
pub async fn befriend(
    a: &chat_client::Connection,
    a_name: &str,
    b: &chat_client::Connection,
    b_name: &str,
) {
    a.call(FriendAddRequest {
        user: b_name.into_user_ref(),
        message: None,
    })
    .await
    .expect("friend request");
    push_where(b, "friend request", |push| {
        matches!(push, Push::PushFriendRequest(_))
    })
    .await;
    b.call(FriendRespondRequest {
        user: a_name.into_user_ref(),
        accept: true,
    })
    .await
    .expect("accepts");
    push_where(a, "friend accepted", |push| {
        matches!(push, Push::PushFriendUpdate(_))
    })
    .await;
}
