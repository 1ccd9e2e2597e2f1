//! `docs/protocol.md` is the contract for client writers, so it is checked
//! against the code: its hex dumps are what the encoder produces, and its
//! tables name every type code and every status.
//!
//! Run `cargo test -p chat-proto --test protocol_doc -- --nocapture` to print
//! the dumps.

use std::path::PathBuf;

use bytes::BytesMut;
use chat_proto::*;

fn protocol_md() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/protocol.md");
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// The classic `hexdump -C` layout: offset, 16 bytes in two groups of 8,
/// then the printable ASCII.
fn hex_dump(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (line, chunk) in bytes.chunks(16).enumerate() {
        out.push_str(&format!("{:08x} ", line * 16));
        for column in 0..16 {
            if column == 8 {
                out.push(' ');
            }
            match chunk.get(column) {
                Some(byte) => out.push_str(&format!(" {byte:02x}")),
                None => out.push_str("   "),
            }
        }
        out.push_str("  |");
        for &byte in chunk {
            out.push(if byte.is_ascii_graphic() || byte == b' ' {
                char::from(byte)
            } else {
                '.'
            });
        }
        out.push_str("|\n");
    }
    out
}

/// The login example of the document: request id 1, by name and password.
fn login_request() -> BytesMut {
    let mut buf = BytesMut::new();
    Request::Login(LoginRequest {
        user: Some(UserRef::Name("alice".to_owned())),
        password: Some("correct horse".to_owned()),
        token: None,
    })
    .encode(1, &mut buf)
    .unwrap();
    buf
}

/// The server's answer to it: one friend online, two messages waiting.
fn login_response() -> BytesMut {
    let mut buf = BytesMut::new();
    Response::Login(LoginResponse {
        user: UserSummary {
            id: UserId(1),
            name: "alice".to_owned(),
        },
        token: "QuE5LN1-jpfpAlMc_M_FIXQQA6ag5cJqD8rk4rdrlTQ".to_owned(),
        token_expires_at_ms: 1_767_225_600_000,
        friends: vec![Friend {
            id: UserId(2),
            name: "bob".to_owned(),
            remark: None,
            category: Some("work".to_owned()),
            online: true,
            conversation_id: ConversationId(1),
        }],
        groups: Vec::new(),
        incoming_requests: Vec::new(),
        outgoing_requests: Vec::new(),
        unacked: 2,
        unread: Vec::new(),
    })
    .encode(1, &mut buf)
    .unwrap();
    buf
}

/// A failed login: wrong password.
fn login_error() -> BytesMut {
    let mut buf = BytesMut::new();
    ErrorBody {
        error: Status::Unauthorized,
        message: "wrong name or password".to_owned(),
    }
    .encode(MessageType::Login.code(), 1, &mut buf);
    buf
}

#[test]
fn hex_dumps_in_the_protocol_doc_match_the_encoder() {
    let doc = protocol_md();
    let examples = [
        ("login request", login_request()),
        ("login response", login_response()),
        ("login error", login_error()),
    ];
    // Print them all first, so a failing run shows everything to paste.
    for (title, bytes) in &examples {
        println!("{title}:\n{}", hex_dump(bytes));
    }
    for (title, bytes) in &examples {
        assert!(
            doc.contains(&hex_dump(bytes)),
            "docs/protocol.md lacks the current {title} dump (run with --nocapture to see it)"
        );
    }
}

#[test]
fn the_example_frames_decode() {
    let mut buf = login_request();
    let frame = frame::decode(&mut buf, DEFAULT_MAX_PAYLOAD)
        .unwrap()
        .unwrap();
    assert!(matches!(
        Request::from_payload(frame.header.message_type, &frame.payload).unwrap(),
        Request::Login(_)
    ));
    for mut buf in [login_response(), login_error()] {
        let frame = frame::decode(&mut buf, DEFAULT_MAX_PAYLOAD)
            .unwrap()
            .unwrap();
        assert!(matches!(
            ServerMessage::from_frame(&frame).unwrap(),
            ServerMessage::Reply { request_id: 1, .. }
        ));
    }
}

/// Whether some line of the document holds every one of `needles`.
fn has_line_with(doc: &str, needles: &[String]) -> bool {
    doc.lines()
        .any(|line| needles.iter().all(|needle| line.contains(needle.as_str())))
}

#[test]
fn protocol_doc_lists_every_type_code() {
    let doc = protocol_md();
    for &message_type in MessageType::REQUESTS.iter().chain(MessageType::PUSHES) {
        let needles = [
            format!("| `0x{:04x}` |", message_type.code()),
            format!("`{}`", message_type.name()),
        ];
        assert!(
            has_line_with(&doc, &needles),
            "docs/protocol.md has no type table row for {needles:?}"
        );
        assert!(
            doc.contains(&format!("### `{}`", message_type.name())),
            "docs/protocol.md has no section for `{}`",
            message_type.name()
        );
    }
}

#[test]
fn protocol_doc_lists_every_status() {
    let doc = protocol_md();
    for &status in Status::ALL {
        let needles = [
            format!("| {} |", status.code()),
            format!("`{}`", status.name()),
        ];
        assert!(
            has_line_with(&doc, &needles),
            "docs/protocol.md has no status table row for {needles:?}"
        );
    }
}

/// One JSON example of the document: the message type its section is about,
/// its kind (the word after ```` ```json ````) and its text.
struct Example {
    section: String,
    kind: String,
    json: String,
}

fn examples(doc: &str) -> Vec<Example> {
    let mut examples = Vec::new();
    let mut section = String::new();
    let mut open: Option<Example> = None;
    for line in doc.lines() {
        if let Some(example) = open.as_mut() {
            if line.trim_end() == "```" {
                examples.extend(open.take());
            } else {
                example.json.push_str(line);
                example.json.push('\n');
            }
        } else if let Some(name) = line.strip_prefix("### `") {
            section = name.trim_end_matches('`').to_owned();
        } else if let Some(kind) = line.strip_prefix("```json ") {
            open = Some(Example {
                section: section.clone(),
                kind: kind.trim().to_owned(),
                json: String::new(),
            });
        }
    }
    assert!(
        open.is_none(),
        "unterminated code block in docs/protocol.md"
    );
    examples
}

/// Drops `null` members: in requests an absent optional field and a `null`
/// one mean the same.
fn without_nulls(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => map
            .into_iter()
            .filter(|(_, value)| !value.is_null())
            .map(|(key, value)| (key, without_nulls(value)))
            .collect(),
        serde_json::Value::Array(items) => items.into_iter().map(without_nulls).collect(),
        other => other,
    }
}

#[test]
fn json_examples_in_the_protocol_doc_parse_as_their_types() {
    let doc = protocol_md();
    let by_name = |name: &str| {
        MessageType::REQUESTS
            .iter()
            .chain(MessageType::PUSHES)
            .copied()
            .find(|message_type| message_type.name() == name)
    };
    let mut seen = std::collections::HashSet::new();
    for example in examples(&doc) {
        let context = format!("{} example in section `{}`", example.kind, example.section);
        let written: serde_json::Value = serde_json::from_str(&example.json)
            .unwrap_or_else(|error| panic!("{context}: not JSON: {error}"));
        let bytes = example.json.as_bytes();
        // What the typed value serializes back to. Unknown fields would be
        // dropped here, so a misspelt field in the document shows up as a
        // difference.
        let (typed, strict) = match example.kind.as_str() {
            "error" => {
                let body: ErrorBody = serde_json::from_str(&example.json)
                    .unwrap_or_else(|error| panic!("{context}: {error}"));
                (serde_json::to_value(body).unwrap(), true)
            }
            kind => {
                let message_type = by_name(&example.section)
                    .unwrap_or_else(|| panic!("{context}: no such message type"));
                let code = message_type.code();
                seen.insert((message_type.name(), kind.to_owned()));
                let parsed = match kind {
                    "request" => Request::from_payload(code, bytes)
                        .map(|request| serde_json::to_value(request).unwrap()),
                    "response" => Response::from_payload(code, bytes)
                        .map(|response| serde_json::to_value(response).unwrap()),
                    "push" => Push::from_payload(code, bytes)
                        .map(|push| serde_json::to_value(push).unwrap()),
                    other => panic!("{context}: unknown example kind {other:?}"),
                };
                let value = parsed.unwrap_or_else(|error| panic!("{context}: {error}"));
                // Responses and pushes always carry every field, so their
                // examples must show every field; requests may leave optional
                // ones out.
                (value, kind != "request")
            }
        };
        if strict {
            assert_eq!(written, typed, "{context}");
        } else {
            assert_eq!(without_nulls(written), without_nulls(typed), "{context}");
        }
    }
    for &request in MessageType::REQUESTS {
        for kind in ["request", "response"] {
            assert!(
                seen.contains(&(request.name(), kind.to_owned())),
                "docs/protocol.md has no {kind} example for `{}`",
                request.name()
            );
        }
    }
    for &push in MessageType::PUSHES {
        assert!(
            seen.contains(&(push.name(), "push".to_owned())),
            "docs/protocol.md has no example for `{}`",
            push.name()
        );
    }
}

/// The optional request fields the document lists, per request type: the
/// rows with "no" in the `required` column of each request's field table.
fn optional_request_fields(doc: &str) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    let mut section = String::new();
    let mut in_request_table = false;
    for line in doc.lines() {
        if let Some(name) = line.strip_prefix("### `") {
            section = name.trim_end_matches('`').to_owned();
            in_request_table = false;
        } else if line.starts_with("| field | type | required |") {
            in_request_table = true;
        } else if !line.starts_with('|') {
            in_request_table = false;
        } else if in_request_table {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            if let (Some(field), Some(required)) = (cells.get(1), cells.get(3)) {
                if required.starts_with("no") {
                    fields.push((section.clone(), field.trim_matches('`').to_owned()));
                }
            }
        }
    }
    fields
}

/// The document says an optional request field may be sent as `null`,
/// meaning the same as leaving it out: every optional field of every
/// request example is tried as `null`.
#[test]
fn every_optional_request_field_accepts_null() {
    let doc = protocol_md();
    let optional = optional_request_fields(&doc);
    assert!(
        optional
            .iter()
            .any(|(section, field)| section == "sync" && field == "cursors"),
        "the field tables were not found: {optional:?}"
    );
    let mut tried = 0;
    for example in examples(&doc).into_iter().filter(|e| e.kind == "request") {
        let Some(message_type) = MessageType::REQUESTS
            .iter()
            .find(|message_type| message_type.name() == example.section)
        else {
            continue;
        };
        for (_, field) in optional.iter().filter(|(s, _)| *s == example.section) {
            let mut value: serde_json::Value = serde_json::from_str(&example.json).unwrap();
            value[field.as_str()] = serde_json::Value::Null;
            let payload = serde_json::to_vec(&value).unwrap();
            let with_null = Request::from_payload(message_type.code(), &payload);
            assert!(
                with_null.is_ok(),
                "`{}` refuses {field}: null: {with_null:?}",
                example.section
            );
            if let Some(object) = value.as_object_mut() {
                object.remove(field.as_str());
            }
            let without =
                Request::from_payload(message_type.code(), &serde_json::to_vec(&value).unwrap());
            assert_eq!(
                with_null.ok(),
                without.ok(),
                "`{}`: {field}: null differs from leaving it out",
                example.section
            );
            tried += 1;
        }
    }
    assert!(tried >= 5, "only {tried} optional fields were tried");
}

/// The row of the limits table (section 11) whose first cell is `name`.
fn limits_row(doc: &str, name: &str) -> String {
    let limits = doc
        .split("## 11. Limits")
        .nth(1)
        .expect("docs/protocol.md has a limits section");
    limits
        .lines()
        .find(|line| line.starts_with(&format!("| {name} |")))
        .unwrap_or_else(|| panic!("the limits table has no row {name:?}"))
        .to_owned()
}

/// The numbers the document gives for reply sizes and the `sync` cursor
/// limit are the code's, and the cursor limit can be reached: a request
/// with that many cursors, with the largest ids a server hands out, fits in
/// the default frame limit, so a client meets `bad_request` past it, never
/// `too_large` before it.
#[test]
fn documented_size_limits_are_the_codes_and_reachable() {
    let doc = protocol_md();
    let mib = |bytes: usize| bytes / (1024 * 1024);
    assert!(doc.contains(&format!(
        "**A client should accept frames of\n  up to {} MiB from the server** (`chat_proto::CLIENT_MAX_PAYLOAD`)",
        mib(CLIENT_MAX_PAYLOAD)
    )));
    assert!(doc.contains(&format!(
        "carries at most {} MiB of message bodies\n  (`chat_proto::PAGE_BODY_BUDGET`",
        mib(PAGE_BODY_BUDGET)
    )));
    assert!(
        limits_row(&doc, "message bodies in one `sync` or `history` page")
            .contains(&format!("| {} MiB", mib(PAGE_BODY_BUDGET)))
    );
    assert!(limits_row(&doc, "`sync` cursors").contains(&format!("at most {SYNC_MAX_CURSORS} |")));
    let largest_id = (1u64 << 53) - 1;
    let request = Request::Sync(SyncRequest {
        cursors: vec![
            Cursor {
                conversation_id: ConversationId(largest_id),
                seq: Seq(largest_id),
            };
            SYNC_MAX_CURSORS
        ],
        limit: Some(1000),
    });
    let mut buf = BytesMut::new();
    request.encode(u32::MAX, &mut buf).unwrap();
    assert!(
        buf.len() - HEADER_LEN <= DEFAULT_MAX_PAYLOAD,
        "a sync request with {SYNC_MAX_CURSORS} cursors takes {} bytes",
        buf.len() - HEADER_LEN
    );
}

/// Every reason a `session_ended` push can carry has a row in the
/// document's table of reasons.
#[test]
fn session_end_reasons_are_documented() {
    let doc = protocol_md();
    let every = [
        SessionEndReason::Draining,
        SessionEndReason::Idle,
        SessionEndReason::SlowConsumer,
        SessionEndReason::LoggedOut,
    ];
    // A new reason fails to compile here until it is added to the list.
    for reason in every {
        match reason {
            SessionEndReason::Draining
            | SessionEndReason::Idle
            | SessionEndReason::SlowConsumer
            | SessionEndReason::LoggedOut => {}
        }
    }
    for reason in every {
        let name = serde_json::to_value(reason).unwrap();
        let name = name.as_str().unwrap();
        assert!(
            has_line_with(&doc, &[format!("| `{name}` |")]),
            "session_ended reason {name} is not documented"
        );
    }
}

#[test]
fn hex_dump_layout() {
    assert_eq!(
        hex_dump(b"CH\x01\x00ABCDEFGHIJKLMNOPQ"),
        "00000000  43 48 01 00 41 42 43 44  45 46 47 48 49 4a 4b 4c  |CH..ABCDEFGHIJKL|\n\
         00000010  4d 4e 4f 50 51                                    |MNOPQ|\n"
    );
}
