//! Remote bases: kustomize's git URLs in `resources` and `components`
//! (`https://host/org/repo//path?ref=v1`, `github.com/org/repo/path?ref=v1`,
//! `git@host:org/repo//path`, `ssh://git@host/org/repo`, `file:///srv/repo.git//path`), parsed
//! as kustomize v5.5 parses them and cloned shallowly with libgit2 into a temporary folder,
//! which becomes the build root of that base.
//!
//! Single files over HTTP (`https://host/raw/deploy.yaml`) are not fetched: they are refused with
//! an error naming the git URL form to use instead.

use std::path::Path;
use std::time::{Duration, Instant};

use git2::build::CheckoutBuilder;
use git2::{Cred, CredentialType, Direction, FetchOptions, Oid, RemoteCallbacks, Repository};

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
    pub timeout: Duration,
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
    let mut submodules = true;
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
    (reference, timeout, submodules)
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

/// Clones the spec's ref, depth 1, into the empty folder `into` (with submodules unless
/// `?submodules=false`), within the spec's timeout.
pub fn clone(spec: &RepoSpec, into: &Path) -> Result<(), String> {
    let deadline = Instant::now() + spec.timeout;
    let repo = Repository::init(into).map_err(|e| format!("creating a repository: {}", e.message()))?;
    if let Ok(mut config) = repo.config() {
        let _ = config.set_bool("core.autocrlf", false);
    }
    let mut remote = repo.remote_anonymous(&spec.clone_url).map_err(|e| e.message().to_owned())?;
    let advertised: Vec<(String, Oid)> = {
        let connection = remote.connect_auth(Direction::Fetch, Some(callbacks(deadline)), None).map_err(|e| e.message().to_owned())?;
        connection.list().map_err(|e| e.message().to_owned())?.iter().map(|head| (head.name().to_owned(), head.oid())).collect()
    };
    let wanted = choose_ref(&advertised, &spec.reference)
        .ok_or_else(|| if spec.reference.is_empty() { "the repository has no HEAD".to_owned() } else { format!("ref '{}' not found", spec.reference) })?;
    let local = "refs/kustomize/fetched";
    let refspec = format!("+{wanted}:{local}");
    let fetch = |depth: Option<i32>, remote: &mut git2::Remote| {
        let mut options = FetchOptions::new();
        options.remote_callbacks(callbacks(deadline));
        if let Some(depth) = depth {
            options.depth(depth);
        }
        remote.fetch(&[refspec.as_str()], Some(&mut options), None)
    };
    // Shallow where the transport allows it; some (local ones) do not.
    if let Err(shallow_error) = fetch(Some(1), &mut remote) {
        if Instant::now() >= deadline {
            return Err(format!("timed out after {:?}", spec.timeout));
        }
        fetch(None, &mut remote).map_err(|e| format!("fetching '{wanted}': {} (shallow: {})", e.message(), shallow_error.message()))?;
    }
    let commit = repo.find_reference(local).and_then(|r| r.peel_to_commit()).map_err(|e| format!("fetched '{wanted}': {}", e.message()))?;
    repo.set_head_detached(commit.id()).map_err(|e| e.message().to_owned())?;
    let mut checkout = CheckoutBuilder::new();
    checkout.force();
    repo.checkout_tree(commit.as_object(), Some(&mut checkout)).map_err(|e| format!("checking out: {}", e.message()))?;
    if spec.submodules {
        update_submodules(&repo, deadline, 0)?;
    }
    Ok(())
}

/// The advertised ref to fetch for `reference`: HEAD when empty, else a full ref name, a branch,
/// a tag or a full commit id (as `git fetch origin <ref>` takes them).
fn choose_ref(advertised: &[(String, Oid)], reference: &str) -> Option<String> {
    let has = |name: &str| advertised.iter().any(|(n, _)| n == name);
    if reference.is_empty() {
        return has("HEAD").then(|| "HEAD".to_owned());
    }
    let candidates = [reference.to_owned(), format!("refs/heads/{reference}"), format!("refs/tags/{reference}")];
    if let Some(found) = candidates.into_iter().find(|c| c.starts_with("refs/") && has(c)) {
        return Some(found);
    }
    // A commit id: fetched by id (servers allow it for advertised tips, local ones for any).
    (reference.len() == 40 && reference.chars().all(|c| c.is_ascii_hexdigit())).then(|| reference.to_ascii_lowercase())
}

fn callbacks<'a>(deadline: Instant) -> RemoteCallbacks<'a> {
    let mut callbacks = RemoteCallbacks::new();
    let mut credential_attempts = 0;
    callbacks.credentials(move |_url, username, allowed| {
        credential_attempts += 1;
        if credential_attempts > 3 || Instant::now() >= deadline {
            return Err(git2::Error::from_str("authentication failed (ferroflux uses the SSH agent or no credentials for remote bases)"));
        }
        if allowed.contains(CredentialType::USERNAME) {
            return Cred::username(username.unwrap_or("git"));
        }
        if allowed.contains(CredentialType::SSH_KEY) {
            return Cred::ssh_key_from_agent(username.unwrap_or("git"));
        }
        Cred::default()
    });
    callbacks.transfer_progress(move |_| Instant::now() < deadline);
    callbacks.sideband_progress(move |_| Instant::now() < deadline);
    callbacks
}

fn update_submodules(repo: &Repository, deadline: Instant, depth: usize) -> Result<(), String> {
    if depth > 8 {
        return Err("submodules nested too deep".into());
    }
    for mut submodule in repo.submodules().map_err(|e| e.message().to_owned())? {
        let mut options = git2::SubmoduleUpdateOptions::new();
        let mut fetch = FetchOptions::new();
        fetch.remote_callbacks(callbacks(deadline));
        options.fetch(fetch);
        let name = submodule.name().unwrap_or("").to_owned();
        submodule.update(true, Some(&mut options)).map_err(|e| format!("submodule '{name}': {}", e.message()))?;
        let inner = submodule.open().map_err(|e| format!("submodule '{name}': {}", e.message()))?;
        update_submodules(&inner, deadline, depth + 1)?;
    }
    Ok(())
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
