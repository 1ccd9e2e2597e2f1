//! Records the commit chatd is built from, for `chatd --version`: the
//! short hash from `git rev-parse`, or `unknown` when there is no git or no
//! repository (a source tarball). It never fails the build.

use std::process::Command;

fn main() {
    let commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=CHATD_GIT_COMMIT={commit}");
    // Run again when the checked-out commit moves: HEAD itself (a switch of
    // branch), the branch it points to (a new commit), and the packed refs
    // (where git may keep that branch). Files that do not exist are left
    // out: Cargo would run the script before every build for them.
    println!("cargo:rerun-if-changed=build.rs");
    let references = ["HEAD".to_owned(), "packed-refs".to_owned()]
        .into_iter()
        .chain(git(&["symbolic-ref", "-q", "HEAD"]));
    for reference in references {
        if let Some(path) = git(&["rev-parse", "--git-path", &reference]) {
            if std::path::Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
}

/// The trimmed output of a successful git command, if any.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}
