//! Feeds arbitrary bytes to the frame decoder, as a server reads them from a
//! hostile client, and every frame it cuts out to the message parsers of both
//! sides. Any panic, overflow or hang is a bug: bad input must only ever
//! produce "need more", frames or an error.

#![no_main]

use bytes::BytesMut;
use chat_proto::frame::{self, HEADER_LEN};
use chat_proto::{Push, Request, Response, ServerMessage, DEFAULT_MAX_PAYLOAD};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the payload limit, so small limits (where almost
    // every length is too large) and the default are both explored.
    let Some((&limit_choice, stream)) = data.split_first() else {
        return;
    };
    let max_payload = match limit_choice % 4 {
        0 => 0,
        1 => 64,
        2 => 4096,
        _ => DEFAULT_MAX_PAYLOAD,
    };

    let mut buf = BytesMut::from(stream);
    loop {
        let buffered = buf.len();
        match frame::decode(&mut buf, max_payload) {
            Ok(Some(frame)) => {
                assert_eq!(frame.header.length as usize, frame.payload.len());
                assert!(frame.payload.len() <= max_payload);
                assert_eq!(buf.len(), buffered - HEADER_LEN - frame.payload.len());
                let code = frame.header.message_type;
                let _ = Request::from_payload(code, &frame.payload);
                let _ = Response::from_payload(code, &frame.payload);
                let _ = Push::from_payload(code, &frame.payload);
                let _ = ServerMessage::from_frame(&frame);
            }
            Ok(None) => {
                // Incomplete: nothing may have been consumed.
                assert_eq!(buf.len(), buffered);
                break;
            }
            Err(error) => {
                let _ = (error.status(), error.request_id(), error.to_string());
                break;
            }
        }
    }
});
