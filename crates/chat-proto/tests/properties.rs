//! Property tests: frames round-trip for any header fields and payload bytes,
//! however the stream is cut, and no input makes the decoder panic.

mod common;

use bytes::{Bytes, BytesMut};
use chat_proto::frame::{self, Frame};
use chat_proto::*;
use proptest::prelude::*;

fn flags() -> impl Strategy<Value = Flags> {
    prop_oneof![
        Just(Flags::REQUEST),
        Just(Flags::RESPONSE),
        Just(Flags::PUSH)
    ]
}

fn any_frame() -> impl Strategy<Value = Frame> {
    (
        flags(),
        any::<u16>(),
        any::<u16>(),
        any::<u32>(),
        proptest::collection::vec(any::<u8>(), 0..2048),
    )
        .prop_map(|(flags, message_type, status, request_id, payload)| Frame {
            header: Header {
                flags,
                message_type,
                status,
                request_id,
                length: payload.len() as u32,
            },
            payload: Bytes::from(payload),
        })
}

/// Interprets a frame every way a peer might; none of these may panic.
fn interpret(frame: &Frame) {
    let code = frame.header.message_type;
    let _ = Request::from_payload(code, &frame.payload);
    let _ = Response::from_payload(code, &frame.payload);
    let _ = Push::from_payload(code, &frame.payload);
    let _ = ServerMessage::from_frame(frame);
}

/// Decodes until the buffer needs more or an error stops the stream, checking
/// the decoder's promises along the way.
fn decode_all(buf: &mut BytesMut, max_payload: usize) -> (Vec<Frame>, Option<FrameError>) {
    let mut frames = Vec::new();
    loop {
        let before = buf.clone();
        match frame::decode(buf, max_payload) {
            Ok(Some(frame)) => {
                assert!(frame.payload.len() <= max_payload);
                assert_eq!(frame.header.length as usize, frame.payload.len());
                assert_eq!(buf.len(), before.len() - HEADER_LEN - frame.payload.len());
                assert_eq!(
                    &before[HEADER_LEN..HEADER_LEN + frame.payload.len()],
                    &frame.payload[..]
                );
                interpret(&frame);
                frames.push(frame);
            }
            Ok(None) => {
                // Nothing consumed, and indeed not a whole frame buffered.
                assert_eq!(&buf[..], &before[..]);
                if buf.len() >= HEADER_LEN {
                    let length = u32::from_be_bytes([buf[12], buf[13], buf[14], buf[15]]);
                    assert!(buf.len() < HEADER_LEN + length as usize);
                }
                return (frames, None);
            }
            Err(error) => {
                // A violation is always found in the first 16 bytes.
                assert!(!before.is_empty());
                assert!(!error.to_string().is_empty());
                let _ = (error.status(), error.request_id());
                return (frames, Some(error));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_frame_round_trips(frame in any_frame()) {
        let mut buf = BytesMut::new();
        frame.write_to(&mut buf);
        prop_assert_eq!(buf.len(), HEADER_LEN + frame.payload.len());
        let decoded = frame::decode(&mut buf, DEFAULT_MAX_PAYLOAD).unwrap();
        prop_assert_eq!(decoded, Some(frame));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn any_stream_of_frames_round_trips_however_it_is_cut(
        frames in proptest::collection::vec(any_frame(), 1..8),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..16),
    ) {
        let mut stream = BytesMut::new();
        for frame in &frames {
            frame.write_to(&mut stream);
        }
        let mut offsets: Vec<usize> = cuts.iter().map(|index| index.index(stream.len() + 1)).collect();
        offsets.push(0);
        offsets.push(stream.len());
        offsets.sort_unstable();
        offsets.dedup();

        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        for window in offsets.windows(2) {
            buf.extend_from_slice(&stream[window[0]..window[1]]);
            let (mut got, error) = decode_all(&mut buf, DEFAULT_MAX_PAYLOAD);
            prop_assert!(error.is_none());
            decoded.append(&mut got);
        }
        prop_assert_eq!(decoded, frames);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn encode_json_round_trips_any_text(
        flags in flags(),
        message_type in any::<u16>(),
        request_id in any::<u32>(),
        text in any::<String>(),
    ) {
        let mut buf = BytesMut::new();
        frame::encode_json(&mut buf, flags, message_type, Status::Ok, request_id, &serde_json::json!({"text": text})).unwrap();
        let frame = frame::decode(&mut buf, usize::MAX).unwrap().unwrap();
        prop_assert_eq!(frame.header.flags, flags);
        prop_assert_eq!(frame.header.message_type, message_type);
        prop_assert_eq!(frame.header.request_id, request_id);
        let value: serde_json::Value = serde_json::from_slice(&frame.payload).unwrap();
        prop_assert_eq!(value["text"].as_str(), Some(text.as_str()));
    }

    #[test]
    fn send_requests_round_trip_any_text(
        to_group in any::<bool>(),
        id in any::<u64>(),
        client_msg_id in any::<String>(),
        body in any::<String>(),
        request_id in any::<u32>(),
    ) {
        let to = if to_group { Target::Group(GroupId(id)) } else { Target::User(UserId(id)) };
        let request = Request::Send(SendRequest { to, client_msg_id, body });
        let mut buf = BytesMut::new();
        request.encode(request_id, &mut buf).unwrap();
        let frame = frame::decode(&mut buf, usize::MAX).unwrap().unwrap();
        prop_assert_eq!(Request::from_payload(frame.header.message_type, &frame.payload).unwrap(), request);
    }

    #[test]
    fn chat_message_pushes_round_trip_any_text(
        conversation in any::<u64>(),
        seq in any::<u64>(),
        sender_name in any::<String>(),
        body in any::<String>(),
        server_ts_ms in any::<i64>(),
    ) {
        let push = Push::PushMessage(ChatMessage {
            conversation_id: ConversationId(conversation),
            seq: Seq(seq),
            sender_id: UserId(1),
            sender_name,
            target: Target::User(UserId(2)),
            client_msg_id: "c".to_owned(),
            body,
            server_ts_ms,
            recalled: None,
        });
        let mut buf = BytesMut::new();
        push.encode(&mut buf).unwrap();
        let frame = frame::decode(&mut buf, usize::MAX).unwrap().unwrap();
        prop_assert_eq!(ServerMessage::from_frame(&frame).unwrap(), ServerMessage::Push(push));
    }

    #[test]
    fn flag_bytes_are_valid_only_for_the_three_kinds(bits in any::<u8>()) {
        let parsed = Flags::from_bits(bits);
        prop_assert_eq!(parsed.is_ok(), bits <= 0b10);
        if let Ok(flags) = parsed {
            prop_assert_eq!(flags.bits(), bits);
            let kinds = [flags.is_request(), flags.is_response(), flags.is_push()];
            prop_assert_eq!(kinds.iter().filter(|kind| **kind).count(), 1);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(
        bytes in proptest::collection::vec(any::<u8>(), 0..4096),
        max_payload in prop_oneof![Just(0usize), Just(16), Just(1024), Just(DEFAULT_MAX_PAYLOAD)],
    ) {
        let mut buf = BytesMut::from(&bytes[..]);
        let _ = decode_all(&mut buf, max_payload);
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_magic_never_panic_the_decoder(
        bytes in proptest::collection::vec(any::<u8>(), 0..4096),
    ) {
        // Starting with the magic gets garbage past the first check, so the
        // rest of the header logic is exercised too.
        let mut buf = BytesMut::from(&MAGIC.to_be_bytes()[..]);
        buf.extend_from_slice(&bytes);
        let _ = decode_all(&mut buf, DEFAULT_MAX_PAYLOAD);
    }

    #[test]
    fn arbitrary_payloads_in_valid_frames_never_panic_the_parsers(
        flags in flags(),
        type_index in any::<prop::sample::Index>(),
        status in prop_oneof![Just(0u16), any::<u16>()],
        payload in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..512),
            any::<String>().prop_map(String::into_bytes),
            // Near-valid JSON objects: a known field name with a random value.
            (prop::sample::select(vec!["user", "to", "seq", "name", "cursors", "reason", "error"]), any::<String>())
                .prop_map(|(field, value)| format!("{{\"{field}\":{value}}}").into_bytes()),
        ],
    ) {
        let known: Vec<MessageType> = MessageType::REQUESTS.iter().chain(MessageType::PUSHES).copied().collect();
        let message_type = known[type_index.index(known.len())];
        let frame = Frame {
            header: Header {
                flags,
                message_type: message_type.code(),
                status,
                request_id: 1,
                length: payload.len() as u32,
            },
            payload: Bytes::from(payload),
        };
        interpret(&frame);
        let mut buf = BytesMut::new();
        frame.write_to(&mut buf);
        let (frames, error) = decode_all(&mut buf, DEFAULT_MAX_PAYLOAD);
        prop_assert!(error.is_none());
        prop_assert_eq!(frames, vec![frame]);
    }
}

#[test]
fn every_sample_message_survives_byte_flips() {
    // Deterministic damage to real frames: flip each byte of each sample in
    // turn. The decoder and parsers must answer, never panic.
    let mut stream = BytesMut::new();
    for request in common::requests() {
        request.encode(1, &mut stream).unwrap();
    }
    for push in common::pushes() {
        push.encode(&mut stream).unwrap();
    }
    let stream = stream.to_vec();
    for index in (0..stream.len()).step_by(7) {
        let mut damaged = stream.clone();
        damaged[index] ^= 0xff;
        let mut buf = BytesMut::from(&damaged[..]);
        let _ = decode_all(&mut buf, DEFAULT_MAX_PAYLOAD);
    }
}
