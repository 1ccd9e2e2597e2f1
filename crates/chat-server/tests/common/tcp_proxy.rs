//! A TCP proxy for fault tests: in front of MariaDB it can go silent (keep
//! every connection open but forward nothing, as a hung server or a network
//! partition would) and reset every connection it carries.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// A TCP proxy that can go silent: it keeps every connection open but
/// forwards nothing, as a hung or partitioned server would.
pub struct SilentProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    silent: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    task: tokio::task::JoinHandle<()>,
}

impl SilentProxy {
    /// A proxy to `upstream` on a free local port.
    pub async fn start(upstream: SocketAddr) -> SilentProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let silent = Arc::new(AtomicBool::new(false));
        let connections: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let flag = silent.clone();
        let handles = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let flag = flag.clone();
                let connection = tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::join!(
                        pump(client_read, server_write, flag.clone()),
                        pump(server_read, client_write, flag),
                    );
                });
                handles.lock().unwrap().push(connection.abort_handle());
            }
        });
        SilentProxy {
            addr,
            silent,
            connections,
            task,
        }
    }

    /// Stops (or resumes) forwarding; connections stay open.
    pub fn set_silent(&self, silent: bool) {
        self.silent.store(silent, Ordering::SeqCst);
    }

    /// Closes every connection it carries at once, as a database restart or
    /// a reset by the network would.
    pub fn reset_all(&self) {
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }
}

impl Drop for SilentProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies one direction, holding bytes back while the proxy is silent.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    silent: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let count = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(count) => count,
        };
        while silent.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if to.write_all(&buf[..count]).await.is_err() {
            return;
        }
    }
}
