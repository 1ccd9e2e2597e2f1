//! The web client's files (`web/` at the repository root): embedded in the
//! binary, so `chatd` serves a chat application at `/` with nothing else
//! installed, or read from a directory (`web_root`) while developing it.
//!
//! Only the files a browser loads are served: `index.html`, the style
//! sheets and images beside it, and the modules under `src/`. The rest of
//! `web/` (tests, `package.json`, `node_modules`) is neither embedded nor
//! served from a web root.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// The shipped files, compiled in (also in debug builds, so a test binary
/// serves what a release would).
#[derive(rust_embed::Embed)]
#[folder = "../../web/"]
#[include = "index.html"]
#[include = "*.css"]
#[include = "*.svg"]
#[include = "src/**/*.js"]
#[exclude = "node_modules/*"]
#[exclude = "e2e/*"]
#[exclude = "test/*"]
struct Embedded;

/// Where the web client's files come from.
#[derive(Debug, Clone)]
pub enum WebFiles {
    /// The files compiled into the binary.
    Embedded,
    /// A directory laid out like `web/`, read at every request.
    Directory(PathBuf),
}

/// A file to answer with.
#[derive(Debug)]
pub struct WebFile {
    /// Its bytes.
    pub body: Cow<'static, [u8]>,
    /// Its `Content-Type`.
    pub content_type: &'static str,
}

impl WebFiles {
    /// The files of a configuration: its `web_root`, or the embedded ones.
    #[must_use]
    pub fn new(web_root: Option<&Path>) -> WebFiles {
        match web_root {
            Some(root) => WebFiles::Directory(root.to_owned()),
            None => WebFiles::Embedded,
        }
    }

    /// The file for a request path (`/` is `index.html`), if it is one of
    /// the shipped files.
    #[must_use]
    pub fn get(&self, request_path: &str) -> Option<WebFile> {
        let path = shipped_path(request_path)?;
        let content_type = content_type(&path)?;
        let body = match self {
            WebFiles::Embedded => Embedded::get(&path)?.data,
            WebFiles::Directory(root) => {
                let full = root.join(&path);
                // Symbolic links out of the root are not followed.
                let real = full.canonicalize().ok()?;
                if !real.starts_with(root.canonicalize().ok()?) || !real.is_file() {
                    return None;
                }
                Cow::Owned(std::fs::read(real).ok()?)
            }
        };
        Some(WebFile { body, content_type })
    }
}

/// The relative path of a shipped file named by a request path, or `None`
/// for anything else (other directories, dot files, `..`).
fn shipped_path(request_path: &str) -> Option<String> {
    let path = request_path.strip_prefix('/')?;
    if path.is_empty() {
        return Some("index.html".to_owned());
    }
    let segments: Vec<&str> = path.split('/').collect();
    let safe = segments.iter().all(|segment| {
        !segment.is_empty()
            && !segment.starts_with('.')
            && segment
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'))
    });
    if !safe {
        return None;
    }
    let top_level = segments.len() == 1;
    let module = segments[0] == "src" && path.ends_with(".js");
    let page =
        top_level && (path == "index.html" || path.ends_with(".css") || path.ends_with(".svg"));
    (module || page).then(|| path.to_owned())
}

/// The `Content-Type` of a shipped file, by its extension.
fn content_type(path: &str) -> Option<&'static str> {
    let extension = path.rsplit_once('.')?.1;
    Some(match extension {
        "html" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "svg" => "image/svg+xml",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_shipped_paths_are_served() {
        assert_eq!(shipped_path("/").as_deref(), Some("index.html"));
        assert_eq!(shipped_path("/index.html").as_deref(), Some("index.html"));
        assert_eq!(shipped_path("/app.css").as_deref(), Some("app.css"));
        assert_eq!(
            shipped_path("/src/ui/chat.js").as_deref(),
            Some("src/ui/chat.js")
        );
        for refused in [
            "",
            "/package.json",
            "/node_modules/typescript/lib/tsc.js",
            "/e2e/chat.test.mjs",
            "/test/protocol.test.mjs",
            "/src/../package.json",
            "/src/.hidden.js",
            "/src//x.js",
            "/src/a%2e%2e.js",
            "/src/app.css",
            "/x/index.html",
        ] {
            assert_eq!(shipped_path(refused), None, "{refused}");
        }
    }

    #[test]
    fn the_embedded_client_is_complete() {
        let files = WebFiles::Embedded;
        let index = files.get("/").expect("index.html is embedded");
        assert_eq!(index.content_type, "text/html; charset=utf-8");
        let page = String::from_utf8_lossy(&index.body);
        assert!(page.contains("src/main.js"), "{page}");
        let module = files.get("/src/protocol.js").expect("modules are embedded");
        assert_eq!(module.content_type, "text/javascript; charset=utf-8");
        assert!(files.get("/package.json").is_none());
        assert!(Embedded::iter().all(|path| shipped_path(&format!("/{path}")).is_some()));
    }

    #[test]
    fn a_web_root_serves_its_files_and_nothing_outside() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("web");
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::write(root.join("index.html"), "<p>dev</p>").unwrap();
        std::fs::write(root.join("src/main.js"), "export {};").unwrap();
        std::fs::write(dir.path().join("secret.css"), "x").unwrap();
        let files = WebFiles::new(Some(&root));
        assert_eq!(&*files.get("/").unwrap().body, b"<p>dev</p>");
        assert_eq!(&*files.get("/src/main.js").unwrap().body, b"export {};");
        assert!(files.get("/missing.css").is_none());
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.path().join("secret.css"), root.join("link.css"))
                .unwrap();
            assert!(files.get("/link.css").is_none());
        }
    }
}
