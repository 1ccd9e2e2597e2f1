//! This crate's own parameters in a store URL: both backends take theirs
//! out (`timeout` for MySQL; `synchronous` and `wal_limit` for SQLite)
//! before handing the rest to sqlx, which would refuse them.

use crate::error::Result;

/// Returns `url` without the query parameters `take` claims. `take` sees
/// each `name=value` pair in order and returns whether it was one of its
/// own (an error stops the walk); the others stay, in their order.
///
/// # Errors
/// The first error `take` returns.
pub(crate) fn take_params(
    url: &str,
    mut take: impl FnMut(&str, &str) -> Result<bool>,
) -> Result<String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok(url.to_owned());
    };
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let taken = match pair.split_once('=') {
            Some((name, value)) => take(name, value)?,
            None => false,
        };
        if !taken {
            rest.push(pair);
        }
    }
    Ok(if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_claimed_parameters_are_taken_out() {
        let mut seen = Vec::new();
        let url = take_params("db://h/x?a=1&&b=2&c&a=3", |name, value| {
            seen.push(format!("{name}={value}"));
            Ok(name == "a")
        })
        .unwrap();
        assert_eq!(url, "db://h/x?b=2&c");
        assert_eq!(seen, ["a=1", "b=2", "a=3"]);
        assert_eq!(
            take_params("db://h/x", |_, _| Ok(true)).unwrap(),
            "db://h/x"
        );
        assert_eq!(
            take_params("db://h/x?a=1", |_, _| Ok(true)).unwrap(),
            "db://h/x"
        );
    }
}
