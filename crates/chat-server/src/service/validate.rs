//! Field checks shared by the handlers. Limits are in characters (Unicode
//! scalar values) for names and text, in bytes for message bodies.

use chat_store::names;

use crate::error::{Result, ServiceError};

/// Longest account name.
pub const MAX_NAME_CHARS: usize = 32;
/// Shortest password.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password.
pub const MAX_PASSWORD_CHARS: usize = 128;
/// Longest group name.
pub const MAX_GROUP_NAME_CHARS: usize = 64;
/// Longest group description.
pub const MAX_DESCRIPTION_CHARS: usize = 512;
/// Longest remark or category.
pub const MAX_LABEL_CHARS: usize = 64;
/// Longest friend request greeting.
pub const MAX_GREETING_CHARS: usize = 256;
/// Longest client message id.
pub const MAX_CLIENT_MSG_ID_CHARS: usize = 64;

/// An account name, returned in the form it is stored and shown in (its
/// Unicode NFKC normalisation, see [`chat_store::names`]): 1 to 32
/// characters, no control, invisible, zero-width or bidirectional control
/// characters, no spaces but the plain one, none at either end, letters of
/// one script only, not all digits (so "login 42" is never ambiguous
/// between a name and an id), and not starting with `deleted account` (the
/// names of deleted accounts). Whether it is taken, in another case or by
/// a name it looks like, is the store's to say.
///
/// # Errors
/// `bad_request` naming the rule broken.
pub fn user_name(name: &str) -> Result<String> {
    let name = names::display_form(name);
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS {
        return Err(ServiceError::bad_request("name must be 1 to 32 characters"));
    }
    if let Some(refusal) = names::refusal(&name) {
        return Err(ServiceError::bad_request(refusal));
    }
    if name.trim() != name {
        return Err(ServiceError::bad_request(
            "name must not start or end with spaces",
        ));
    }
    if name.chars().all(|c| c.is_ascii_digit()) {
        return Err(ServiceError::bad_request("name must not be all digits"));
    }
    if chat_store::admin::is_reserved_name(&name) {
        return Err(ServiceError::bad_request(
            "names starting with \"deleted account\" are reserved",
        ));
    }
    Ok(name)
}

/// A password: 8 to 128 characters.
///
/// # Errors
/// `bad_request`.
pub fn password(password: &str) -> Result<()> {
    let chars = password.chars().count();
    if !(MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&chars) {
        return Err(ServiceError::bad_request(
            "password must be 8 to 128 characters",
        ));
    }
    Ok(())
}

/// A free-text field of at most `max` characters with no control characters
/// other than newlines and tabs; `required` also forbids empty text.
///
/// # Errors
/// `bad_request` naming `field`.
pub fn text(field: &str, value: &str, max: usize, required: bool) -> Result<()> {
    if required && value.trim().is_empty() {
        return Err(ServiceError::bad_request(format!(
            "{field} must not be empty"
        )));
    }
    if value.chars().count() > max {
        return Err(ServiceError::bad_request(format!(
            "{field} must be at most {max} characters"
        )));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(ServiceError::bad_request(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(user_name("alice").is_ok());
        assert!(user_name("名前😀").is_ok());
        assert!(user_name("Robert'); DROP TABLE users;--").is_ok());
        assert!(user_name("").is_err());
        assert!(user_name("12345").is_err());
        assert!(user_name(" bob").is_err());
        assert!(user_name("a\u{0}b").is_err());
        assert!(user_name(&"x".repeat(33)).is_err());
        assert!(user_name(&"é".repeat(32)).is_ok());
        assert!(user_name("Deleted Account #7").is_err());
        assert_eq!(user_name("cafe\u{301}").unwrap(), "café");
        assert!(user_name("b\u{200B}ob").is_err());
        assert!(user_name("\u{202E}evil").is_err());
        assert!(user_name("\u{430}lice").is_err());
    }

    #[test]
    fn passwords_and_text() {
        assert!(password("short").is_err());
        assert!(password("long enough").is_ok());
        assert!(text("body", "", 10, true).is_err());
        assert!(text("body", "line\nline", 10, true).is_ok());
        assert!(text("body", "bell\u{7}", 10, true).is_err());
        assert!(text("remark", "", 10, false).is_ok());
    }
}
