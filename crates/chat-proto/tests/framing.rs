//! Framing: a byte stream becomes frames however it is cut up, and a bad
//! header is rejected from the header alone.

mod common;

use bytes::{Bytes, BytesMut};
use chat_proto::frame::{self, Frame};
use chat_proto::*;
use common::{raw_frame, raw_header};
use tokio_util::codec::{Decoder, Encoder};

/// Every sample request, response and push encoded back to back, and the
/// frames they are.
fn sample_stream() -> (Vec<u8>, Vec<Frame>) {
    let mut stream = BytesMut::new();
    for (index, request) in common::requests().iter().enumerate() {
        request.encode(index as u32 + 1, &mut stream).unwrap();
    }
    for (index, response) in common::responses().iter().enumerate() {
        response.encode(index as u32 + 1, &mut stream).unwrap();
    }
    for push in common::pushes() {
        push.encode(&mut stream).unwrap();
    }
    ErrorBody {
        error: Status::NotFound,
        message: "no such user".to_owned(),
    }
    .encode(MessageType::FriendAdd.code(), 99, &mut stream);
    // An empty payload is a valid frame (if not a valid message).
    stream.extend_from_slice(&raw_frame(0, MessageType::Ping.code(), 0, 100, b""));

    let mut copy = stream.clone();
    let mut frames = Vec::new();
    while let Some(frame) = frame::decode(&mut copy, DEFAULT_MAX_PAYLOAD).unwrap() {
        frames.push(frame);
    }
    assert!(copy.is_empty());
    (stream.to_vec(), frames)
}

#[test]
fn many_frames_in_one_buffer() {
    let (stream, frames) = sample_stream();
    let expected =
        common::requests().len() + common::responses().len() + common::pushes().len() + 2;
    assert_eq!(frames.len(), expected);
    // Re-encoding the decoded frames gives back the stream byte for byte.
    let mut again = BytesMut::new();
    for frame in &frames {
        frame.write_to(&mut again);
    }
    assert_eq!(&again[..], &stream[..]);
    // Each frame decodes to the message it was made from.
    for (frame, request) in frames.iter().zip(common::requests()) {
        assert_eq!(
            Request::from_payload(frame.header.message_type, &frame.payload).unwrap(),
            request
        );
    }
}

#[test]
fn stream_fed_one_byte_at_a_time_through_the_codec() {
    let (stream, expected) = sample_stream();
    let mut codec = FrameCodec::default();
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for &byte in &stream {
        buf.extend_from_slice(&[byte]);
        // Drain everything decodable, as a connection's read loop would.
        while let Some(frame) = codec.decode(&mut buf).unwrap() {
            frames.push(frame);
        }
    }
    assert_eq!(frames, expected);
    assert!(buf.is_empty());
    assert!(codec.decode_eof(&mut buf).unwrap().is_none());
}

#[test]
fn stream_fed_in_uneven_chunks_through_the_codec() {
    let (stream, expected) = sample_stream();
    for chunk_len in [2, 3, 7, 15, 16, 17, 100, 4096] {
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for chunk in stream.chunks(chunk_len) {
            buf.extend_from_slice(chunk);
            while let Some(frame) = codec.decode(&mut buf).unwrap() {
                frames.push(frame);
            }
        }
        assert_eq!(frames, expected, "chunks of {chunk_len}");
    }
}

#[test]
fn frame_split_at_every_offset() {
    let mut two = BytesMut::new();
    common::requests()[2].encode(11, &mut two).unwrap();
    let first_len = two.len();
    common::pushes()[0].encode(&mut two).unwrap();
    let mut whole = two.clone();
    let expected_first = frame::decode(&mut whole, DEFAULT_MAX_PAYLOAD)
        .unwrap()
        .unwrap();
    let expected_second = frame::decode(&mut whole, DEFAULT_MAX_PAYLOAD)
        .unwrap()
        .unwrap();

    for cut in 0..=two.len() {
        let mut buf = BytesMut::from(&two[..cut]);
        let mut frames = Vec::new();
        while let Some(frame) = frame::decode(&mut buf, DEFAULT_MAX_PAYLOAD).unwrap() {
            frames.push(frame);
        }
        // Exactly the frames wholly before the cut come out, and the rest
        // of the bytes stay buffered untouched.
        let whole_frames = usize::from(cut >= first_len) + usize::from(cut == two.len());
        assert_eq!(frames.len(), whole_frames, "cut at {cut}");
        let consumed = if cut == two.len() {
            two.len()
        } else if cut >= first_len {
            first_len
        } else {
            0
        };
        assert_eq!(&buf[..], &two[consumed..cut], "cut at {cut}");

        buf.extend_from_slice(&two[cut..]);
        while let Some(frame) = frame::decode(&mut buf, DEFAULT_MAX_PAYLOAD).unwrap() {
            frames.push(frame);
        }
        assert_eq!(
            frames,
            [expected_first.clone(), expected_second.clone()],
            "cut at {cut}"
        );
        assert!(buf.is_empty());
    }
}

#[test]
fn incomplete_stream_at_end_of_input_is_an_error() {
    let mut bytes = BytesMut::new();
    Request::Ping(PingRequest {}).encode(1, &mut bytes).unwrap();
    let mut codec = FrameCodec::default();
    let mut buf = BytesMut::from(&bytes[..bytes.len() - 1]);
    assert!(codec.decode(&mut buf).unwrap().is_none());
    assert!(matches!(codec.decode_eof(&mut buf), Err(FrameError::Io(_))));
}

#[test]
fn codec_encodes_frames_and_preencoded_bytes() {
    let mut codec = FrameCodec::default();
    let mut out = BytesMut::new();
    let mut push = BytesMut::new();
    common::pushes()[0].encode(&mut push).unwrap();
    let push = push.freeze();
    let mut request = BytesMut::new();
    Request::Ping(PingRequest {})
        .encode(5, &mut request)
        .unwrap();
    let request_frame = frame::decode(&mut request, DEFAULT_MAX_PAYLOAD)
        .unwrap()
        .unwrap();

    Encoder::<Frame>::encode(&mut codec, request_frame.clone(), &mut out).unwrap();
    // One push encoded once, written to two sessions' buffers (here: twice).
    Encoder::<Bytes>::encode(&mut codec, push.clone(), &mut out).unwrap();
    Encoder::<Bytes>::encode(&mut codec, push.clone(), &mut out).unwrap();

    assert_eq!(codec.decode(&mut out).unwrap(), Some(request_frame));
    for _ in 0..2 {
        let frame = codec.decode(&mut out).unwrap().unwrap();
        assert!(matches!(
            ServerMessage::from_frame(&frame).unwrap(),
            ServerMessage::Push(Push::PushMessage(_))
        ));
    }
    assert!(out.is_empty());
}

#[test]
fn bad_magic_is_rejected_from_two_bytes() {
    let mut codec = FrameCodec::default();
    let mut buf = BytesMut::from(&b"GE"[..]);
    let error = codec.decode(&mut buf).unwrap_err();
    assert!(matches!(error, FrameError::BadMagic(0x4745)), "{error:?}");
    assert_eq!(error.status(), Status::ProtocolError);
    assert_eq!(error.request_id(), 0);

    // A plausible HTTP request is garbage too.
    let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..]);
    assert!(matches!(
        frame::decode(&mut buf, DEFAULT_MAX_PAYLOAD),
        Err(FrameError::BadMagic(_))
    ));

    // A well-formed header whose magic is off by one bit.
    let mut buf = BytesMut::from(&raw_header(0x4349, VERSION, 0, 1, 0, 1, 2)[..]);
    buf.extend_from_slice(b"{}");
    assert!(matches!(
        frame::decode(&mut buf, DEFAULT_MAX_PAYLOAD),
        Err(FrameError::BadMagic(0x4349))
    ));

    // One byte is not yet enough to tell.
    let mut buf = BytesMut::from(&b"G"[..]);
    assert!(frame::decode(&mut buf, DEFAULT_MAX_PAYLOAD)
        .unwrap()
        .is_none());
}

#[test]
fn bad_magic_after_a_good_frame() {
    let mut buf = BytesMut::new();
    Request::Ping(PingRequest {}).encode(1, &mut buf).unwrap();
    buf.extend_from_slice(b"\x00\x00garbage");
    assert!(frame::decode(&mut buf, DEFAULT_MAX_PAYLOAD)
        .unwrap()
        .is_some());
    assert!(matches!(
        frame::decode(&mut buf, DEFAULT_MAX_PAYLOAD),
        Err(FrameError::BadMagic(0))
    ));
}

#[test]
fn unsupported_version_carries_the_request_id() {
    for version in [0u8, 2, 0xff] {
        let header = raw_header(MAGIC, version, 0, MessageType::Login.code(), 0, 4242, 2);
        // The header alone is enough; the body need not have arrived.
        let mut buf = BytesMut::from(&header[..]);
        let error = frame::decode(&mut buf, DEFAULT_MAX_PAYLOAD).unwrap_err();
        match error {
            FrameError::UnsupportedVersion {
                version: got,
                request_id: 4242,
            } => assert_eq!(got, version),
            ref other => panic!("expected UnsupportedVersion, got {other:?}"),
        }
        assert_eq!(error.status(), Status::UnsupportedVersion);
        assert_eq!(error.request_id(), 4242);
    }
}

#[test]
fn version_is_checked_before_length() {
    // A future version may have a different length rule; the version error is
    // the useful one.
    let header = raw_header(MAGIC, 2, 0, 1, 0, 8, u32::MAX);
    let mut buf = BytesMut::from(&header[..]);
    assert!(matches!(
        frame::decode(&mut buf, DEFAULT_MAX_PAYLOAD),
        Err(FrameError::UnsupportedVersion { request_id: 8, .. })
    ));
}

#[test]
fn length_above_the_limit_is_rejected_from_the_header_alone() {
    let limit = DEFAULT_MAX_PAYLOAD as u32;
    for length in [limit + 1, 1 << 30, u32::MAX] {
        let header = raw_header(MAGIC, VERSION, 0, MessageType::Send.code(), 0, 31, length);
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::from(&header[..]);
        let error = codec.decode(&mut buf).unwrap_err();
        match error {
            FrameError::TooLarge {
                length: got,
                max,
                request_id: 31,
            } => {
                assert_eq!(got, length);
                assert_eq!(max, DEFAULT_MAX_PAYLOAD);
            }
            ref other => panic!("expected TooLarge, got {other:?}"),
        }
        assert_eq!(error.status(), Status::TooLarge);
        assert_eq!(error.request_id(), 31);
        // Nothing was reserved for the body that will never be read.
        assert!(
            buf.capacity() < DEFAULT_MAX_PAYLOAD,
            "capacity grew to {}",
            buf.capacity()
        );
    }
}

#[test]
fn length_at_the_limit_is_accepted() {
    let limit = 100;
    let mut codec = FrameCodec::new(limit);
    assert_eq!(codec.max_payload(), limit);

    let payload = vec![b' '; limit];
    let mut buf = BytesMut::from(&raw_frame(0, 1, 0, 1, &payload)[..]);
    let frame = codec.decode(&mut buf).unwrap().unwrap();
    assert_eq!(frame.payload.len(), limit);

    let mut buf = BytesMut::from(&raw_header(MAGIC, VERSION, 0, 1, 0, 2, limit as u32 + 1)[..]);
    assert!(matches!(
        codec.decode(&mut buf),
        Err(FrameError::TooLarge { max: 100, .. })
    ));
}

#[test]
fn a_header_waiting_for_its_body_reserves_room_for_it() {
    let header = raw_header(MAGIC, VERSION, 0, 1, 0, 1, 60_000);
    let mut buf = BytesMut::from(&header[..]);
    assert!(frame::decode(&mut buf, DEFAULT_MAX_PAYLOAD)
        .unwrap()
        .is_none());
    assert_eq!(
        buf.len(),
        HEADER_LEN,
        "nothing is consumed while incomplete"
    );
    assert!(buf.capacity() >= HEADER_LEN + 60_000);
}

#[test]
fn reserved_flag_bits_are_rejected() {
    for bits in (0u8..=255).filter(|bits| *bits > 0b10) {
        let header = raw_header(MAGIC, VERSION, bits, 1, 0, 6, 2);
        let mut buf = BytesMut::from(&header[..]);
        let error = frame::decode(&mut buf, DEFAULT_MAX_PAYLOAD).unwrap_err();
        assert!(
            matches!(error, FrameError::ReservedFlags(got) if got == bits),
            "{bits:#04x}: {error:?}"
        );
        assert_eq!(error.status(), Status::ProtocolError);
    }
    for bits in [0u8, 0b01, 0b10] {
        let mut buf = BytesMut::from(&raw_frame(bits, 1, 0, 6, b"{}")[..]);
        let frame = frame::decode(&mut buf, DEFAULT_MAX_PAYLOAD)
            .unwrap()
            .unwrap();
        assert_eq!(frame.header.flags.bits(), bits);
    }
}

#[test]
fn header_fields_are_big_endian_at_their_offsets() {
    let mut buf = BytesMut::new();
    frame::encode_json(
        &mut buf,
        Flags::RESPONSE,
        0x0102,
        Status::Conflict,
        0x0a0b_0c0d,
        &serde_json::json!({"k": "v"}),
    )
    .unwrap();
    assert_eq!(
        &buf[..HEADER_LEN],
        &[
            0x43, 0x48, // magic "CH"
            0x01, // version
            0x01, // flags: RESPONSE
            0x01, 0x02, // type
            0x00, 0x05, // status: conflict
            0x0a, 0x0b, 0x0c, 0x0d, // request id
            0x00, 0x00, 0x00, 0x09, // length
        ]
    );
    assert_eq!(&buf[HEADER_LEN..], br#"{"k":"v"}"#);
}

#[test]
fn framing_errors_are_answered_with_an_error_frame_a_client_understands() {
    // What a server sends before closing: an ErrorBody frame with the error's
    // status and request id, echoing the type code it saw (0 if none).
    let errors = [
        FrameError::BadMagic(0x4745),
        FrameError::ReservedFlags(0x80),
        FrameError::UnsupportedVersion {
            version: 9,
            request_id: 12,
        },
        FrameError::TooLarge {
            length: 1 << 20,
            max: DEFAULT_MAX_PAYLOAD,
            request_id: 13,
        },
    ];
    for error in errors {
        let mut buf = BytesMut::new();
        ErrorBody {
            error: error.status(),
            message: error.to_string(),
        }
        .encode(0, error.request_id(), &mut buf);
        let frame = common::decode_one(&buf);
        match ServerMessage::from_frame(&frame).unwrap() {
            ServerMessage::Reply {
                request_id,
                result: Err(body),
            } => {
                assert_eq!(request_id, error.request_id());
                assert_eq!(body.error, error.status());
                assert!(!body.message.is_empty());
            }
            other => panic!("{error:?}: got {other:?}"),
        }
    }
}
