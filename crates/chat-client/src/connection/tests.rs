//! These tests put a scripted peer on the other end of a real socket, so
//! they can reorder replies, go silent or hang up at exact moments that a
//! real server never would on demand.

use chat_proto::{
    ConversationId, ErrorBody, Frame, FriendListRequest, GroupListRequest, HistoryRequest,
    PingRequest, PingResponse, PresencePush, Status, UserId,
};
use tokio::net::TcpListener;
use tokio_util::codec::Framed;

use super::*;

async fn peer() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    (listener, address)
}

async fn accept(listener: &TcpListener) -> Framed<TcpStream, FrameCodec> {
    let (stream, _) = listener.accept().await.unwrap();
    Framed::new(stream, FrameCodec::default())
}

async fn reply(server: &mut Framed<TcpStream, FrameCodec>, response: &Response, id: u32) {
    let mut buf = BytesMut::new();
    response.encode(id, &mut buf).unwrap();
    futures::SinkExt::send(server, buf.freeze()).await.unwrap();
}

fn pong(ts: i64) -> Response {
    Response::Ping(PingResponse { server_ts_ms: ts })
}

#[tokio::test]
async fn replies_in_any_order_reach_their_callers() {
    let (listener, address) = peer().await;
    let server = tokio::spawn(async move {
        let mut server = accept(&listener).await;
        let mut ids = Vec::new();
        for _ in 0..3 {
            let frame: Frame = server.next().await.unwrap().unwrap();
            assert_ne!(frame.header.request_id, 0);
            ids.push(frame.header.request_id);
        }
        // Answer in reverse, each carrying its own id as the timestamp.
        for &id in ids.iter().rev() {
            reply(&mut server, &pong(i64::from(id)), id).await;
        }
        server
    });
    let connection = Connection::connect(address).await.unwrap();
    let (a, b, c) = tokio::join!(
        connection.call(PingRequest {}),
        connection.call(PingRequest {}),
        connection.call(PingRequest {})
    );
    let mut stamps = vec![
        a.unwrap().server_ts_ms,
        b.unwrap().server_ts_ms,
        c.unwrap().server_ts_ms,
    ];
    stamps.sort_unstable();
    stamps.dedup();
    assert_eq!(stamps.len(), 3, "every caller got its own reply");
    drop(server.await.unwrap());
}

#[tokio::test]
async fn an_error_status_becomes_a_server_error() {
    let (listener, address) = peer().await;
    tokio::spawn(async move {
        let mut server = accept(&listener).await;
        let frame: Frame = server.next().await.unwrap().unwrap();
        let mut buf = BytesMut::new();
        ErrorBody {
            error: Status::Unauthorized,
            message: "log in first".to_owned(),
        }
        .encode(frame.header.message_type, frame.header.request_id, &mut buf);
        futures::SinkExt::send(&mut server, buf.freeze())
            .await
            .unwrap();
        server.next().await
    });
    let connection = Connection::connect(address).await.unwrap();
    let error = connection.call(FriendListRequest {}).await.unwrap_err();
    assert_eq!(error.status(), Some(Status::Unauthorized));
    assert!(error.is_server_error());
}

#[tokio::test]
async fn a_closed_connection_fails_every_waiting_request() {
    let (listener, address) = peer().await;
    tokio::spawn(async move {
        let mut server = accept(&listener).await;
        // Read both requests, then hang up without answering.
        let _ = server.next().await;
        let _ = server.next().await;
    });
    let connection = Connection::connect(address).await.unwrap();
    connection.set_request_timeout(Duration::from_secs(30));
    let (a, b) = tokio::join!(
        connection.call(PingRequest {}),
        connection.call(GroupListRequest {})
    );
    assert!(matches!(a, Err(ClientError::Closed(_))), "{a:?}");
    assert!(matches!(b, Err(ClientError::Closed(_))), "{b:?}");
    connection.closed().await;
    assert!(connection.is_closed());
    let after = connection.call(PingRequest {}).await;
    assert!(matches!(after, Err(ClientError::Closed(_))), "{after:?}");
    assert_eq!(connection.next_push().await, None);
}

#[tokio::test]
async fn a_silent_server_times_the_request_out() {
    let (listener, address) = peer().await;
    tokio::spawn(async move {
        let mut server = accept(&listener).await;
        while server.next().await.is_some() {}
    });
    let connection = Connection::connect(address).await.unwrap();
    connection.set_request_timeout(Duration::from_millis(50));
    let error = connection.call(PingRequest {}).await.unwrap_err();
    assert!(matches!(error, ClientError::Timeout(_)), "{error:?}");
    assert!(connection.shared.lock().pending.is_empty());
}

#[tokio::test]
async fn pushes_queue_in_order_and_unmatched_replies_are_kept() {
    let (listener, address) = peer().await;
    tokio::spawn(async move {
        let mut server = accept(&listener).await;
        let mut buf = BytesMut::new();
        for user in 1..=3 {
            Push::PushPresence(PresencePush {
                user_id: UserId(user),
                online: true,
            })
            .encode(&mut buf)
            .unwrap();
        }
        ErrorBody {
            error: Status::ProtocolError,
            message: "bad magic".to_owned(),
        }
        .encode(0, 0, &mut buf);
        futures::SinkExt::send(&mut server, buf.freeze())
            .await
            .unwrap();
        server.next().await
    });
    let connection = Connection::connect(address).await.unwrap();
    for user in 1..=3 {
        let push = connection.next_push_timeout(Duration::from_secs(5)).await;
        assert_eq!(
            push,
            Some(Push::PushPresence(PresencePush {
                user_id: UserId(user),
                online: true
            }))
        );
    }
    let unmatched = connection
        .next_unmatched_reply(Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(unmatched.request_id, 0);
    assert_eq!(unmatched.result.unwrap_err().error, Status::ProtocolError);
}

#[tokio::test]
async fn a_reply_of_the_wrong_type_is_a_protocol_error() {
    let (listener, address) = peer().await;
    tokio::spawn(async move {
        let mut server = accept(&listener).await;
        let frame: Frame = server.next().await.unwrap().unwrap();
        reply(&mut server, &pong(1), frame.header.request_id).await;
        server.next().await
    });
    let connection = Connection::connect(address).await.unwrap();
    let error = connection.call(GroupListRequest {}).await.unwrap_err();
    assert!(matches!(error, ClientError::Protocol(_)), "{error:?}");
}

#[tokio::test]
async fn send_raw_reaches_the_server_verbatim_and_request_ids_are_distinct() {
    let (listener, address) = peer().await;
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut received = vec![0u8; 5];
        tokio::io::AsyncReadExt::read_exact(&mut stream, &mut received)
            .await
            .unwrap();
        received
    });
    let connection = Connection::connect(address).await.unwrap();
    connection.send_raw(b"hello").await.unwrap();
    assert_eq!(server.await.unwrap(), b"hello");
    let ids: std::collections::HashSet<u32> = (0..1000)
        .map(|_| connection.allocate_request_id())
        .collect();
    assert_eq!(ids.len(), 1000);
    assert!(!ids.contains(&0));
    let first = connection.new_client_msg_id();
    assert_ne!(first, connection.new_client_msg_id());
    assert!(first.len() <= 64);
}

#[tokio::test]
async fn request_ids_skip_zero_when_the_counter_wraps() {
    let (listener, address) = peer().await;
    let _server = tokio::spawn(async move { listener.accept().await });
    let connection = Connection::connect(address).await.unwrap();
    connection
        .next_request_id
        .store(u32::MAX, Ordering::Relaxed);
    assert_eq!(connection.allocate_request_id(), u32::MAX);
    assert_eq!(connection.allocate_request_id(), 1);
}

#[tokio::test]
async fn an_undecodable_reply_fails_only_its_request() {
    let (listener, address) = peer().await;
    tokio::spawn(async move {
        let mut server = accept(&listener).await;
        let first: Frame = server.next().await.unwrap().unwrap();
        let second: Frame = server.next().await.unwrap().unwrap();
        let mut buf = BytesMut::new();
        chat_proto::frame::encode_json(
            &mut buf,
            chat_proto::Flags::RESPONSE,
            first.header.message_type,
            Status::Ok,
            first.header.request_id,
            &serde_json::json!({"nonsense": true}),
        )
        .unwrap();
        Response::Ping(PingResponse { server_ts_ms: 7 })
            .encode(second.header.request_id, &mut buf)
            .unwrap();
        futures::SinkExt::send(&mut server, buf.freeze())
            .await
            .unwrap();
        server.next().await
    });
    let connection = Connection::connect(address).await.unwrap();
    let history = connection.call(HistoryRequest {
        conversation_id: ConversationId(1),
        before_seq: None,
        after_seq: None,
        limit: None,
    });
    let (first, second) = tokio::join!(history, async {
        // Make sure the history request is written first.
        tokio::task::yield_now().await;
        connection.call(PingRequest {}).await
    });
    assert!(matches!(first, Err(ClientError::Protocol(_))), "{first:?}");
    assert_eq!(second.unwrap().server_ts_ms, 7);
    assert!(!connection.is_closed());
}
