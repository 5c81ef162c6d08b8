//! Remote bases: kustomize's git URLs in `resources` and `components`
//! (`https://host/org/repo//path?ref=v1`, `github.com/org/repo/path?ref=v1`,
//! `git@host:org/repo//path`, `ssh://git@host/org/repo`, `file:///srv/repo.git//path`), parsed
//! as kustomize v5.5 parses them and cloned shallowly into a temporary folder, which becomes the
//! build root of that base. The clone is the source controller's Git session
//! ([`crate::source::git::clone_remote_base`]): its own deadline (`?timeout=`, at most
//! [`crate::source::git::remote::MAX_REMOTE_BASE_TIMEOUT`]), size limits, host checks and
//! scrubbed errors. Unlike kustomize, submodules are fetched only with `?submodules=true`.
//!
//! Single files over HTTP (`https://host/raw/deploy.yaml`) are not fetched: they are refused with
//! an error naming the git URL form to use instead.

use std::path::Path;
use std::time::Duration;

use crate::source::git::{CloneOptions, clone_remote_base};

/// kustomize's default for `?timeout=`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(27);

/// A parsed remote base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoSpec {
    /// What `git clone` gets (kustomize's `CloneSpec`, also the `repo` of origins).
    pub clone_url: String,
    /// The kustomization's folder inside the repository ("" for its root).
    pub root_path: String,
    /// `?ref=` (or `?version=`): a branch, tag or commit; empty for the remote's HEAD.
    pub reference: String,
    /// `?timeout=`, capped (see [`CloneOptions::new`]).
    pub timeout: Duration,
    /// `?submodules=true`; off by default (kustomize's default is on).
    pub submodules: bool,
}

/// Whether `entry` is an http(s) URL of a single file (which kustomize downloads, and ferroflux
/// refuses) rather than of a git repository.
pub fn is_http_file(entry: &str) -> bool {
    let lower = entry.to_ascii_lowercase();
    let Some(rest) = lower.strip_prefix("https://").or_else(|| lower.strip_prefix("http://")) else { return false };
    let path = rest.split(['?', '#']).next().unwrap_or("");
    let file_like = [".yaml", ".yml", ".json"].iter().any(|e| path.ends_with(e));
    file_like && !path.contains("//") && !path.contains(".git/") && !rest.contains("?ref=") && !rest.contains("?version=")
}

/// Parses a remote base URL as kustomize's `NewRepoSpecFromURL` does; `Err` when `entry` is not
/// a remote URL (a local path).
pub fn parse(entry: &str) -> Result<RepoSpec, String> {
    if entry.starts_with('/') {
        return Err(format!("uri looks like abs path: {entry}"));
    }
    let (rest, query) = entry.split_once('?').unwrap_or((entry, ""));
    let (reference, timeout, submodules) = parse_query(query);
    let (host, path) = split_host(rest)?;
    let (repo_path, root_path) = split_path(path, host.starts_with("file://"))?;
    if repo_path.is_empty() {
        return Err("failed to parse repo path segment".into());
    }
    Ok(RepoSpec { clone_url: format!("{host}{repo_path}"), root_path: root_path.trim_matches('/').to_owned(), reference, timeout, submodules })
}

fn parse_query(query: &str) -> (String, Duration, bool) {
    let mut reference = String::new();
    let mut version = String::new();
    let mut timeout = DEFAULT_TIMEOUT;
    let mut submodules = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "ref" if reference.is_empty() => reference = value.to_owned(),
            "version" if version.is_empty() => version = value.to_owned(),
            "timeout" => {
                if let Some(parsed) = parse_timeout(value) {
                    timeout = parsed;
                }
            }
            "submodules" => match value {
                "1" | "t" | "T" | "true" | "TRUE" | "True" => submodules = true,
                "0" | "f" | "F" | "false" | "FALSE" | "False" => submodules = false,
                _ => {}
            },
            _ => {}
        }
    }
    // `version` wins over `ref`, as in kustomize.
    if !version.is_empty() {
        reference = version;
    }
    (reference, timeout.min(crate::source::git::remote::MAX_REMOTE_BASE_TIMEOUT), submodules)
}

/// Seconds (`30`) or a Go duration of one unit (`1m`, `90s`, `500ms`).
fn parse_timeout(value: &str) -> Option<Duration> {
    if let Ok(seconds) = value.parse::<u64>() {
        return (seconds > 0).then(|| Duration::from_secs(seconds));
    }
    let split = value.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return None,
    };
    (seconds > 0.0).then(|| Duration::from_secs_f64(seconds))
}

/// The scheme, user and host part (`https://github.com/`, `git@host:`, `file://`) and the rest.
fn split_host(entry: &str) -> Result<(String, &str), String> {
    // kustomize strips go-getter's `git::` prefix (with a deprecation warning).
    let entry = entry.strip_prefix("git::").unwrap_or(entry);
    let lower = entry.to_ascii_lowercase();
    let scheme = ["http://", "https://", "file://", "ssh://"].into_iter().find(|s| lower.starts_with(s)).unwrap_or("");
    let rest = &entry[scheme.len()..];
    let user_end = rest.find('@').filter(|&at| {
        let user = &rest[..at];
        user.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) && user.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    });
    let (user, rest) = match user_end {
        Some(at) => rest.split_at(at + 1),
        None => ("", rest),
    };
    let github = rest.to_ascii_lowercase().starts_with("github.com/") || rest.to_ascii_lowercase().starts_with("github.com:");
    let scp = scheme.is_empty() && (!user.is_empty() || github);
    if scheme.is_empty() && !scp {
        return Err("failed to parse scheme".into());
    }
    if scheme == "file://" {
        return Ok((scheme.to_owned(), &entry[scheme.len()..]));
    }
    let slash = rest.find('/');
    let separator = match (scp, rest.find(':')) {
        (true, Some(colon)) if colon > 0 && slash.is_none_or(|s| colon < s) => Some(colon),
        _ => slash,
    };
    let (host, path) = match separator {
        Some(i) => (&rest[..=i], &rest[i + 1..]),
        None => (rest, ""),
    };
    if host.is_empty() {
        return Err("failed to parse host segment".into());
    }
    if github {
        // GitHub URLs are normalized: ssh (or a user) gives `git@github.com:`, else https.
        return Ok(if scheme == "ssh://" || !user.is_empty() { (format!("{user}github.com:"), path) } else { ("https://github.com/".to_owned(), path) });
    }
    Ok((format!("{scheme}{user}{host}"), path))
}

/// Splits the repository from the kustomization's folder in it: at `//`, after `.git`, after
/// `_git/<repo>` (Azure), or after `org/repo`; a `file://` URL without those is all repository.
fn split_path(path: &str, file: bool) -> Result<(String, String), String> {
    if let Some((repo, root)) = path.split_once("//") {
        return Ok((repo.to_owned(), root.to_owned()));
    }
    if let Some(index) = path.find("_git/") {
        let after = &path[index + "_git/".len()..];
        let (name, root) = after.split_once('/').unwrap_or((after, ""));
        return Ok((format!("{}{name}", &path[..index + "_git/".len()]), root.to_owned()));
    }
    if let Some(index) = path.find(".git").filter(|&i| i > 0) {
        let end = index + ".git".len();
        if end == path.len() || path.as_bytes()[end] == b'/' {
            return Ok((path[..end].to_owned(), path[end..].trim_start_matches('/').to_owned()));
        }
    }
    if file {
        return Ok((path.to_owned(), String::new()));
    }
    let mut segments = path.splitn(3, '/');
    let org = segments.next().unwrap_or("");
    let repo = segments.next().unwrap_or("");
    if org.is_empty() || repo.is_empty() {
        return Err(format!("url lacks orgRepo: {path}"));
    }
    Ok((format!("{org}/{repo}"), segments.next().unwrap_or("").to_owned()))
}

/// Clones the spec's ref, depth 1, into the empty folder `into` (with submodules only for
/// `?submodules=true`), within the spec's timeout and the remote-base size limits.
pub fn clone(spec: &RepoSpec, into: &Path) -> Result<(), String> {
    let options = CloneOptions::new(spec.timeout, spec.submodules);
    clone_remote_base(&spec.clone_url, &spec.reference, &options, into).map(|_commit| ()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(entry: &str) -> (String, String, String) {
        let spec = parse(entry).expect("a remote URL");
        (spec.clone_url, spec.root_path, spec.reference)
    }

    #[test]
    fn urls_parse_like_kustomize() {
        let s = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
        assert_eq!(spec("https://github.com/org/repo//deploy/prod?ref=v1"), s("https://github.com/org/repo", "deploy/prod", "v1"));
        assert_eq!(spec("github.com/org/repo/deploy?ref=main"), s("https://github.com/org/repo", "deploy", "main"));
        assert_eq!(spec("git@github.com:org/repo/deploy"), s("git@github.com:org/repo", "deploy", ""));
        assert_eq!(spec("ssh://git@example.com/org/repo.git/deploy?version=v2&ref=v1"), s("ssh://git@example.com/org/repo.git", "deploy", "v2"));
        assert_eq!(spec("git::https://example.com/org/repo//x?timeout=90s&submodules=false"), s("https://example.com/org/repo", "x", ""));
        assert_eq!(spec("file:///srv/repos/app.git//base?ref=v1"), s("file:///srv/repos/app.git", "base", "v1"));
        assert_eq!(spec("file:///srv/repos/app"), s("file:///srv/repos/app", "", ""));
        assert_eq!(spec("https://dev.azure.com/org/project/_git/repo/base"), s("https://dev.azure.com/org/project/_git/repo", "base", ""));
        for local in ["../base", "base", "/abs/path", "gitlab.com/org/repo"] {
            assert!(parse(local).is_err(), "{local}");
        }
        let timeouts = parse("https://h/o/r?timeout=2m&submodules=0").expect("parses");
        assert_eq!((timeouts.timeout, timeouts.submodules), (Duration::from_secs(120), false));
        // Submodules only when asked; `?timeout=` capped.
        assert!(!parse("https://h/o/r").expect("parses").submodules);
        assert!(parse("https://h/o/r?submodules=true").expect("parses").submodules);
        assert_eq!(parse("https://h/o/r?timeout=1000h").expect("parses").timeout, crate::source::git::remote::MAX_REMOTE_BASE_TIMEOUT);
        assert_eq!(parse("https://h/o/r?timeout=10").expect("parses").timeout, Duration::from_secs(10));
        assert_eq!(parse("https://h/o/r?timeout=junk").expect("parses").timeout, DEFAULT_TIMEOUT);
    }

    #[test]
    fn single_files_over_http_are_told_apart_from_repositories() {
        assert!(is_http_file("https://raw.githubusercontent.com/org/repo/main/deploy.yaml"));
        assert!(!is_http_file("https://github.com/org/repo//deploy.yaml?ref=v1"));
        assert!(!is_http_file("https://github.com/org/repo"));
        assert!(!is_http_file("file:///srv/x.yaml"));
    }
}
