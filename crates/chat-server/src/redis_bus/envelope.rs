//! What nodes publish to each other's `deliver:{node}` channel, and its
//! parsing. Two kinds of message: a push, `1 <user>,<user>,...\n<frame
//! bytes>` (published by `lua/route.lua`, which writes the same layout), and
//! an order to end a user's sessions, `end <user>\n<message>` (all of them)
//! or `end <user> <token hash>\n<message>` (those of one token). An empty
//! message is a node's check of its own subscription. Anything else is
//! dropped: a malformed message costs nothing but itself.

use bytes::Bytes;
use chat_proto::UserId;

/// The most recipients an incoming envelope may name.
const MAX_ENVELOPE_USERS: usize = 1_000_000;
/// The version tag that starts every push envelope.
const ENVELOPE_VERSION: &[u8] = b"1 ";
/// The tag that starts an envelope ordering a user's sessions to end.
pub(super) const END_ENVELOPE: &[u8] = b"end ";

/// The order to end `user`'s sessions (only those of the token with hash
/// `token_hash`, if given) with `message`.
pub(super) fn end_order(user: UserId, token_hash: Option<&str>, message: &str) -> Vec<u8> {
    let target = match token_hash {
        Some(token_hash) => format!("{} {token_hash}", user.0),
        None => user.0.to_string(),
    };
    let mut envelope = END_ENVELOPE.to_vec();
    envelope.extend_from_slice(format!("{target}\n{message}").as_bytes());
    envelope
}

/// Splits an envelope, `1 <user>,<user>,...\n<frame bytes>`, into its
/// recipients and frame; `None` if it is malformed.
pub(super) fn parse(payload: &[u8]) -> Option<(Vec<UserId>, Bytes)> {
    let rest = payload.strip_prefix(ENVELOPE_VERSION)?;
    let newline = rest.iter().position(|&byte| byte == b'\n')?;
    let (header, frame) = (&rest[..newline], &rest[newline + 1..]);
    if frame.is_empty() {
        return None;
    }
    let header = std::str::from_utf8(header).ok()?;
    let mut users = Vec::new();
    for id in header.split(',') {
        if users.len() >= MAX_ENVELOPE_USERS {
            return None;
        }
        users.push(UserId(id.parse().ok()?));
    }
    Some((users, Bytes::copy_from_slice(frame)))
}

/// An order to end sessions, from another node.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct EndOrder {
    pub(super) user: UserId,
    /// Only the sessions holding the token with this hash; all if `None`.
    pub(super) token_hash: Option<String>,
    pub(super) message: String,
}

/// Splits an end order (what follows `end `): `<user>\n<message>`, or
/// `<user> <token hash>\n<message>`.
pub(super) fn parse_end_order(order: &[u8]) -> Option<EndOrder> {
    let text = std::str::from_utf8(order).ok()?;
    let (target, message) = text.split_once('\n')?;
    let (user, token_hash) = match target.split_once(' ') {
        Some((user, token_hash)) if !token_hash.is_empty() => (user, Some(token_hash.to_owned())),
        Some(_) => return None,
        None => (target, None),
    };
    Some(EndOrder {
        user: UserId(user.parse().ok()?),
        token_hash,
        message: message.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_envelopes() {
        let (users, frame) = parse(b"1 7,12\nFRAME\nwith newline").unwrap();
        assert_eq!(users, vec![UserId(7), UserId(12)]);
        assert_eq!(&frame[..], b"FRAME\nwith newline");
        let (users, _) = parse(b"1 3\nx").unwrap();
        assert_eq!(users, vec![UserId(3)]);
    }

    #[test]
    fn parses_end_orders() {
        assert_eq!(
            parse_end_order(b"42\nyour account was disabled"),
            Some(EndOrder {
                user: UserId(42),
                token_hash: None,
                message: "your account was disabled".to_owned()
            })
        );
        assert_eq!(
            parse_end_order(b"42\n"),
            Some(EndOrder {
                user: UserId(42),
                token_hash: None,
                message: String::new()
            })
        );
        assert_eq!(
            parse_end_order(b"42 abc123\nlogged out"),
            Some(EndOrder {
                user: UserId(42),
                token_hash: Some("abc123".to_owned()),
                message: "logged out".to_owned()
            })
        );
        for bad in [&b""[..], b"42", b"x\nm", b"-1\nm", b"4\xff\nm", b"42 \nm"] {
            assert!(parse_end_order(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn rejects_malformed_envelopes() {
        for bad in [
            &b""[..],
            b"1 ",
            b"1 7",
            b"1 7\n",
            b"2 7\nx",
            b"1 \nx",
            b"1 7,\nx",
            b"1 -7\nx",
            b"1 seven\nx",
            b"1 99999999999999999999999\nx",
            b"1 \xff\nx",
        ] {
            assert!(parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn end_orders_round_trip() {
        for token_hash in [None, Some("abc123")] {
            let order = end_order(UserId(9), token_hash, "bye\nnow");
            let rest = order.strip_prefix(END_ENVELOPE).unwrap();
            assert_eq!(
                parse_end_order(rest),
                Some(EndOrder {
                    user: UserId(9),
                    token_hash: token_hash.map(str::to_owned),
                    message: "bye\nnow".to_owned()
                })
            );
        }
    }
}
