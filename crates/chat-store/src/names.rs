//! Account names: when two names are the same account, when one only looks
//! like another, and which characters a name may not hold.
//!
//! A name is stored in its NFKC form (so `café` typed precomposed or
//! decomposed, or a full-width `ａ`, is one name), as its owner chose to
//! write it. Beside it the store keeps two derived keys, each unique:
//!
//! - the **key**, the name case-folded (`Alice` and `alice` are one account;
//!   a name is looked up by it), and
//! - the **skeleton** of the key by Unicode UTS #39 (`аlice` with a Cyrillic
//!   `а`, or `rnary` beside `mary`, looks like another name and is refused).
//!
//! Both are computed here, from the Unicode data of the `unicode-security`
//! and `unicode-normalization` crates, when an account is created, and for
//! accounts created before they existed when the store opens (see
//! [`crate::admin`]'s backfill).

use unicode_normalization::UnicodeNormalization;
use unicode_security::general_security_profile::IdentifierType;
use unicode_security::{GeneralSecurityProfile, MixedScript};

/// The form a name is stored and shown in: its NFKC normalisation.
#[must_use]
pub fn display_form(name: &str) -> String {
    name.nfkc().collect()
}

/// The name's unique key: NFKC, lower case, NFKC again (lowering can undo
/// a normalisation). Two names with one key are one account.
#[must_use]
pub fn key(name: &str) -> String {
    let lowered: String = name.nfkc().flat_map(char::to_lowercase).collect();
    lowered.nfkc().collect()
}

/// The UTS #39 skeleton of the name's key: two names with one skeleton
/// look alike (`paypal` and `pаypal` with a Cyrillic `а`).
#[must_use]
pub fn skeleton(name: &str) -> String {
    unicode_security::skeleton(&key(name)).collect()
}

/// Bidirectional formatting characters: they reorder what follows them, so
/// a name holding one can display as another.
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// Characters that take no space: a name with one looks like the name
/// without it.
fn is_zero_width(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}' | '\u{180E}' | '\u{200B}'..='\u{200D}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}'
    )
}

/// Why `name` (in its [display form](display_form)) cannot be an account
/// name, or `None` if it can: control characters, invisible ones (zero
/// width, bidirectional controls, and every other Unicode default-ignorable
/// code point), spaces other than the plain space, and letters of scripts
/// that are not used together (Latin with Cyrillic, say).
#[must_use]
pub fn refusal(name: &str) -> Option<&'static str> {
    for c in name.chars() {
        if c.is_control() {
            return Some("name must not contain control characters");
        }
        if is_bidi_control(c) {
            return Some("name must not contain bidirectional control characters");
        }
        if is_zero_width(c)
            || matches!(c.identifier_type(), Some(IdentifierType::Default_Ignorable))
        {
            return Some("name must not contain invisible or zero-width characters");
        }
        if c.is_whitespace() && c != ' ' {
            return Some("name must not contain spaces other than the plain space");
        }
    }
    if !name.is_single_script() {
        return Some("name must not mix letters of different scripts (Latin and Cyrillic, say)");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_account_whatever_the_case_or_the_composition() {
        assert_eq!(key("Case"), key("case"));
        assert_eq!(key("CAFÉ"), key("cafe\u{301}"));
        assert_eq!(key("ｆｕｌｌ"), key("full"));
        assert_ne!(key("alice"), key("alice "));
        assert_eq!(display_form("cafe\u{301}"), "café");
        assert_eq!(display_form("Bob"), "Bob");
    }

    #[test]
    fn look_alikes_share_a_skeleton() {
        assert_eq!(skeleton("alice"), skeleton("\u{430}lice"));
        assert_eq!(skeleton("paypal"), skeleton("p\u{430}yp\u{430}l"));
        assert_eq!(skeleton("Mary"), skeleton("rnary"));
        assert_ne!(skeleton("alice"), skeleton("bob"));
    }

    #[test]
    fn invisible_bidi_and_mixed_script_names_are_refused() {
        for refused in [
            "b\u{200B}ob",
            "\u{202E}evil",
            "a\u{2066}b",
            "soft\u{AD}hyphen",
            "zwj\u{200D}",
            "tab\there",
            "line\u{2028}break",
            "\u{430}lice",
            "hangul\u{3164}filler",
        ] {
            assert!(refusal(refused).is_some(), "{refused:?} was allowed");
        }
        for allowed in [
            "alice",
            "Bob Smith",
            "名前😀",
            "日本語のなまえ",
            "Ελένη",
            "Дмитрий",
            "bob_42",
            "Robert'); DROP TABLE users;--",
        ] {
            assert_eq!(refusal(allowed), None, "{allowed:?} was refused");
        }
    }
}
