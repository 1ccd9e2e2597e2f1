//! The supervisor against a scripted server, which can leave gaps,
//! refuse tokens and hang up in the middle of a send at exact moments.

use std::collections::HashMap;

use bytes::BytesMut;
use chat_proto::{
    AckResponse, ChatMessage, ErrorBody, Frame, FrameCodec, HistoryResponse, LoginResponse,
    PingResponse, Push, SendResponse, SyncResponse, UserId,
};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_util::codec::Framed;

use super::*;

const CONVERSATION: ConversationId = ConversationId(10);
const ALICE: UserId = UserId(1);
const BOB: UserId = UserId(2);

fn from_alice(seq: u64) -> ChatMessage {
    ChatMessage {
        conversation_id: CONVERSATION,
        seq: Seq(seq),
        sender_id: ALICE,
        sender_name: "alice".to_owned(),
        target: Target::User(BOB),
        client_msg_id: format!("alice-{seq}"),
        body: format!("message {seq}"),
        server_ts_ms: 1_700_000_000_000,
        recalled: None,
    }
}

enum Control {
    Push(Push),
}

/// What the scripted server remembers across connections.
struct ServerState {
    log: Vec<ChatMessage>,
    requests: Vec<Request>,
    logins: u32,
    /// client_msg_id to position, for idempotent sends.
    sent: HashMap<String, Seq>,
    /// Hang up (without answering) on the first send of a new id.
    hang_up_on_first_send: bool,
    /// Store the first send of a new id but answer `unavailable`, as a
    /// node whose database connection broke right after the commit.
    unavailable_after_first_commit: bool,
}

fn login_response(token: &str) -> LoginResponse {
    LoginResponse {
        user: UserSummary {
            id: BOB,
            name: "bob".to_owned(),
        },
        token: token.to_owned(),
        token_expires_at_ms: i64::MAX,
        friends: Vec::new(),
        groups: Vec::new(),
        incoming_requests: Vec::new(),
        outgoing_requests: Vec::new(),
        unacked: 0,
        unread: Vec::new(),
    }
}

/// Answers one request; `None` means hang up instead.
fn answer(
    state: &mut ServerState,
    request: &Request,
) -> Option<std::result::Result<Response, Status>> {
    state.requests.push(request.clone());
    Some(match request {
        Request::Ping(_) => Ok(Response::Ping(PingResponse { server_ts_ms: 0 })),
        Request::Login(login) => {
            if login.token.as_deref() == Some("t1") && state.logins > 0 {
                // The first token no longer works after a "restart".
                Err(Status::Unauthorized)
            } else {
                state.logins += 1;
                let token = if state.logins == 1 { "t1" } else { "t2" };
                Ok(Response::Login(login_response(token)))
            }
        }
        Request::Ack(ack) => Ok(Response::Ack(AckResponse { acked_seq: ack.seq })),
        Request::History(history) => {
            let after = history.after_seq.unwrap_or(Seq::ZERO);
            let before = history.before_seq.unwrap_or(Seq(u64::MAX));
            let messages: Vec<ChatMessage> = state
                .log
                .iter()
                .filter(|m| m.seq > after && m.seq < before)
                .take(history.limit.unwrap_or(50) as usize)
                .cloned()
                .collect();
            Ok(Response::History(HistoryResponse {
                messages,
                has_more: false,
            }))
        }
        Request::Sync(sync) => {
            let after = sync
                .cursors
                .iter()
                .find(|c| c.conversation_id == CONVERSATION)
                .map_or(Seq::ZERO, |c| c.seq);
            let messages = state
                .log
                .iter()
                .filter(|m| m.seq > after)
                .cloned()
                .collect();
            Ok(Response::Sync(SyncResponse {
                messages,
                has_more: false,
            }))
        }
        Request::Send(send) => {
            if let Some(&seq) = state.sent.get(&send.client_msg_id) {
                return Some(Ok(Response::Send(SendResponse {
                    conversation_id: CONVERSATION,
                    seq,
                    server_ts_ms: 0,
                    duplicate: true,
                })));
            }
            let seq = Seq(state.log.len() as u64 + 1);
            state.sent.insert(send.client_msg_id.clone(), seq);
            state.log.push(ChatMessage {
                conversation_id: CONVERSATION,
                seq,
                sender_id: BOB,
                sender_name: "bob".to_owned(),
                target: send.to,
                client_msg_id: send.client_msg_id.clone(),
                body: send.body.clone(),
                server_ts_ms: 0,
                recalled: None,
            });
            if state.unavailable_after_first_commit {
                state.unavailable_after_first_commit = false;
                return Some(Err(Status::Unavailable));
            }
            if state.hang_up_on_first_send {
                // Committed, but the answer is lost with the connection.
                state.hang_up_on_first_send = false;
                return None;
            }
            Ok(Response::Send(SendResponse {
                conversation_id: CONVERSATION,
                seq,
                server_ts_ms: 0,
                duplicate: false,
            }))
        }
        _ => Err(Status::BadRequest),
    })
}

/// Serves connections one after another until the test ends.
async fn serve(
    listener: TcpListener,
    state: Arc<Mutex<ServerState>>,
    mut control: mpsc::UnboundedReceiver<Control>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let mut framed = Framed::new(stream, FrameCodec::default());
        loop {
            tokio::select! {
                frame = framed.next() => {
                    let Some(Ok(frame)) = frame else { break };
                    let frame: Frame = frame;
                    let request = Request::from_payload(frame.header.message_type, &frame.payload)
                        .expect("the client sends valid requests");
                    let reply = answer(&mut state.lock().unwrap(), &request);
                    let mut buf = BytesMut::new();
                    match reply {
                        None => break,
                        Some(Ok(response)) => {
                            response.encode(frame.header.request_id, &mut buf).unwrap();
                        }
                        Some(Err(status)) => ErrorBody {
                            error: status,
                            message: "scripted refusal".to_owned(),
                        }
                        .encode(frame.header.message_type, frame.header.request_id, &mut buf),
                    }
                    if framed.send(buf.freeze()).await.is_err() {
                        break;
                    }
                }
                control = control.recv() => match control {
                    Some(Control::Push(push)) => {
                        let mut buf = BytesMut::new();
                        push.encode(&mut buf).unwrap();
                        if framed.send(buf.freeze()).await.is_err() {
                            break;
                        }
                    }
                    None => return,
                },
            }
        }
    }
}

struct Harness {
    client: Client,
    state: Arc<Mutex<ServerState>>,
    control: mpsc::UnboundedSender<Control>,
}

async fn harness(log: Vec<ChatMessage>) -> Harness {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let state = Arc::new(Mutex::new(ServerState {
        log,
        requests: Vec::new(),
        logins: 0,
        sent: HashMap::new(),
        hang_up_on_first_send: false,
        unavailable_after_first_commit: false,
    }));
    let (control, control_rx) = mpsc::unbounded_channel();
    tokio::spawn(serve(listener, Arc::clone(&state), control_rx));
    let mut options = ClientOptions::new(address);
    options.keepalive = None;
    options.ack_interval = Duration::from_millis(20);
    options.reconnect.initial_backoff = Duration::from_millis(5);
    let client = Client::connect(options).await.unwrap();
    client.login("bob", "password").await.unwrap();
    Harness {
        client,
        state,
        control,
    }
}

async fn next_message(client: &Client) -> ChatMessage {
    loop {
        match client.next_event_timeout(Duration::from_secs(10)).await {
            Some(Event::Message(message)) => return message,
            Some(_) => {}
            None => panic!("no message"),
        }
    }
}

fn push(harness: &Harness, message: ChatMessage) {
    harness
        .control
        .send(Control::Push(Push::PushMessage(message)))
        .unwrap();
}

#[tokio::test]
async fn a_gap_is_filled_from_history_before_the_message_after_it() {
    let harness = harness((1..=4).map(from_alice).collect()).await;
    push(&harness, from_alice(1));
    push(&harness, from_alice(4));
    let mut seqs = Vec::new();
    for _ in 0..4 {
        seqs.push(next_message(&harness.client).await.seq.0);
    }
    assert_eq!(seqs, [1, 2, 3, 4]);
    // A repeat is dropped.
    push(&harness, from_alice(3));
    assert!(harness
        .client
        .next_event_timeout(Duration::from_millis(200))
        .await
        .is_none());
    harness.client.flush_acks().await.unwrap();
    let state = harness.state.lock().unwrap();
    assert!(state.requests.iter().any(|request| matches!(
        request,
        Request::History(history)
            if history.after_seq == Some(Seq(1)) && history.before_seq == Some(Seq(4))
    )));
    let last_ack = state
        .requests
        .iter()
        .rev()
        .find_map(|request| match request {
            Request::Ack(ack) => Some(ack.seq),
            _ => None,
        });
    assert_eq!(last_ack, Some(Seq(4)));
}

#[tokio::test]
async fn a_send_answered_unavailable_is_repeated_with_the_same_id() {
    let harness = harness(Vec::new()).await;
    harness.state.lock().unwrap().unavailable_after_first_commit = true;
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        harness
            .client
            .send(Target::User(ALICE), "stored, then unavailable"),
    )
    .await
    .expect("the send completes")
    .expect("the repeat succeeds");
    // The first try was stored: the repeat found it, nothing is doubled.
    assert!(response.duplicate);
    assert_eq!(response.seq, Seq(1));
    let state = harness.state.lock().unwrap();
    assert_eq!(state.log.len(), 1);
    let sends: Vec<&str> = state
        .requests
        .iter()
        .filter_map(|request| match request {
            Request::Send(send) => Some(send.client_msg_id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(sends.len(), 2);
    assert_eq!(sends[0], sends[1], "the repeat uses the same client_msg_id");
}

#[tokio::test]
async fn after_a_hang_up_mid_send_it_resumes_and_resends_the_same_id() {
    let harness = harness(vec![from_alice(1)]).await;
    push(&harness, from_alice(1));
    assert_eq!(next_message(&harness.client).await.seq, Seq(1));
    harness.state.lock().unwrap().hang_up_on_first_send = true;

    let response = tokio::time::timeout(
        Duration::from_secs(10),
        harness.client.send(Target::User(ALICE), "are you there?"),
    )
    .await
    .expect("the send completes after the reconnect")
    .expect("the send succeeds");
    assert!(response.duplicate, "the resend found the first copy");
    assert_eq!(response.seq, Seq(2));

    // The token was refused, the password worked, and the new token is
    // kept for next time.
    assert_eq!(harness.client.token().as_deref(), Some("t2"));
    {
        let state = harness.state.lock().unwrap();
        let sends: Vec<&str> = state
            .requests
            .iter()
            .filter_map(|request| match request {
                Request::Send(send) => Some(send.client_msg_id.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(sends.len(), 2);
        assert_eq!(sends[0], sends[1], "the resend uses the same client_msg_id");
        let logins: Vec<(bool, bool)> = state
            .requests
            .iter()
            .filter_map(|request| match request {
                Request::Login(login) => Some((login.token.is_some(), login.password.is_some())),
                _ => None,
            })
            .collect();
        assert_eq!(logins, [(false, true), (true, false), (false, true)]);
        assert!(state.requests.iter().any(|request| matches!(
            request,
            Request::Sync(sync) if sync.cursors == [chat_proto::Cursor {
                conversation_id: CONVERSATION,
                seq: Seq(1),
            }]
        )));
    }

    // The own message that sync returned is not shown, and alice's next
    // message follows without a gap.
    harness.state.lock().unwrap().log.push(from_alice(3));
    push(&harness, from_alice(3));
    let mut events = Vec::new();
    let message = loop {
        match harness
            .client
            .next_event_timeout(Duration::from_secs(10))
            .await
        {
            Some(Event::Message(message)) => break message,
            Some(other) => events.push(other),
            None => panic!("no message after the reconnect"),
        }
    };
    assert_eq!(message.seq, Seq(3));
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Disconnected { .. })));
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Reconnected { login: Some(_), .. })));
    // Nothing was missing, so nothing was fetched.
    assert!(!harness
        .state
        .lock()
        .unwrap()
        .requests
        .iter()
        .any(|request| matches!(request, Request::History(_))));
}
