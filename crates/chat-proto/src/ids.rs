//! Newtype identifiers.
//!
//! Every identifier that crosses the wire has its own type so that a group id can
//! never be passed where a user id is expected. On the wire each is a plain JSON
//! number. Ids are assigned by the store and never reused.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<u64> for $name {
            fn from(value: u64) -> Self {
                Self(value)
            }
        }
    };
}

id_type!(
    /// A registered account.
    UserId
);
id_type!(
    /// A group (chat room with members and roles).
    GroupId
);
id_type!(
    /// A conversation: the message log of one pair of friends or of one group.
    ConversationId
);
id_type!(
    /// A per-conversation sequence number. The first message of a conversation
    /// has sequence number 1 and numbers are gap-free; 0 means "nothing yet".
    Seq
);

impl Seq {
    /// The sequence number before the first message.
    pub const ZERO: Seq = Seq(0);

    /// The sequence number after this one.
    #[must_use]
    pub fn next(self) -> Seq {
        Seq(self.0 + 1)
    }
}
