//! Status codes carried in the `status` field of response headers.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! statuses {
    ($( $(#[$doc:meta])* $variant:ident = $code:literal, $name:literal; )*) => {
        /// The result of a request. `Ok` is 0; every other value is an error and
        /// its response payload is an [`ErrorBody`](crate::message::ErrorBody).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u16)]
        pub enum Status {
            $( $(#[$doc])* $variant = $code, )*
        }

        impl Status {
            /// Every status, in code order.
            pub const ALL: &'static [Status] = &[$(Status::$variant),*];

            /// The status with this wire code, if there is one.
            #[must_use]
            pub fn from_code(code: u16) -> Option<Status> {
                match code {
                    $( $code => Some(Status::$variant), )*
                    _ => None,
                }
            }

            /// The stable, lower-case name used in error bodies (`"not_found"`).
            #[must_use]
            pub fn name(self) -> &'static str {
                match self {
                    $( Status::$variant => $name, )*
                }
            }
        }
    };
}

statuses! {
    /// The request succeeded.
    Ok = 0, "ok";
    /// The request is malformed: invalid JSON, a missing or mistyped field, a
    /// value out of range, a request id of 0.
    BadRequest = 1, "bad_request";
    /// The session is not logged in, or the credentials or token are wrong.
    Unauthorized = 2, "unauthorized";
    /// The session's user may not do this (not a friend, not a member, not an
    /// admin, acting for somebody else).
    Forbidden = 3, "forbidden";
    /// The user, group, conversation or request named does not exist.
    NotFound = 4, "not_found";
    /// The thing already exists or the state does not allow it (name taken,
    /// already friends, already a member).
    Conflict = 5, "conflict";
    /// Too many requests, connections or failed logins; retry later.
    RateLimited = 6, "rate_limited";
    /// A frame or a field is larger than the server accepts.
    TooLarge = 7, "too_large";
    /// The header's protocol version is not supported; the connection closes.
    UnsupportedVersion = 8, "unsupported_version";
    /// The header's message type is not known to this server.
    UnknownType = 9, "unknown_type";
    /// The frame violates the framing rules (bad magic, reserved flag bits);
    /// the connection closes.
    ProtocolError = 10, "protocol_error";
    /// The server failed; the request may be retried.
    Internal = 11, "internal";
    /// The server is draining or a dependency is down; retry, perhaps on
    /// another node.
    Unavailable = 12, "unavailable";
}

impl Status {
    /// The wire code.
    #[must_use]
    pub fn code(self) -> u16 {
        self as u16
    }

    /// Whether this is [`Status::Ok`].
    #[must_use]
    pub fn is_ok(self) -> bool {
        self == Status::Ok
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Status {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Status {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Status::ALL
            .iter()
            .copied()
            .find(|status| status.name() == name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown status {name:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_names_are_unique() {
        let mut names = std::collections::HashSet::new();
        for &status in Status::ALL {
            assert_eq!(Status::from_code(status.code()), Some(status));
            assert!(names.insert(status.name()));
        }
        assert_eq!(Status::from_code(999), None);
    }
}
