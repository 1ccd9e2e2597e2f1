//! Naming a user in a request.

use chat_proto::{UserId, UserRef};

/// Turns the usual ways of naming a user into a [`UserRef`]: a `&str` or
/// `String` is a name, a [`UserId`] is an id.
pub trait IntoUserRef {
    /// The reference.
    fn into_user_ref(self) -> UserRef;
}

impl IntoUserRef for &str {
    fn into_user_ref(self) -> UserRef {
        UserRef::Name(self.to_owned())
    }
}

impl IntoUserRef for String {
    fn into_user_ref(self) -> UserRef {
        UserRef::Name(self)
    }
}

impl IntoUserRef for &String {
    fn into_user_ref(self) -> UserRef {
        UserRef::Name(self.clone())
    }
}

impl IntoUserRef for UserId {
    fn into_user_ref(self) -> UserRef {
        UserRef::Id(self)
    }
}

impl IntoUserRef for UserRef {
    fn into_user_ref(self) -> UserRef {
        self
    }
}

impl IntoUserRef for &UserRef {
    fn into_user_ref(self) -> UserRef {
        self.clone()
    }
}
