//! Parsing the URLs a `GitRepository` may hold (`http://`, `https://`, `ssh://`, as Flux's CRD
//! validation allows) far enough to know the host and port, and redacting their credentials.

use super::GitError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
    Ssh,
    /// `file://` — only for kustomize remote bases, never for a `GitRepository`.
    File,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitUrl {
    pub scheme: Scheme,
    /// Host without brackets (an IPv6 address is bare).
    pub host: String,
    pub port: u16,
    /// The user name in the URL, if any (the part before `:` in `user:password@`).
    pub username: Option<String>,
    /// The URL with any password or token replaced, safe for logs and error messages.
    pub redacted: String,
}

const REDACTED: &str = "redacted";

impl GitUrl {
    /// A remote base's clone URL as kustomize accepts it: what [`GitUrl::parse`] takes, plus
    /// scp-like `user@host:path` (SSH, port 22) and `file://` (a repository on this machine).
    pub fn parse_remote_base(url: &str) -> Result<Self, GitError> {
        let invalid = |reason: &str| GitError::InvalidUrl { url: redact_url(url), reason: reason.to_owned() };
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("contains whitespace or control characters"));
        }
        if let Some(path) = url.strip_prefix("file://") {
            if path.is_empty() {
                return Err(invalid("missing repository path"));
            }
            return Ok(GitUrl { scheme: Scheme::File, host: String::new(), port: 0, username: None, redacted: url.to_owned() });
        }
        if url.contains("://") {
            return GitUrl::parse(url);
        }
        // scp-like: `[user@]host:path`, the host ending at the first ':'.
        let (authority, path) = url.split_once(':').ok_or_else(|| invalid("missing scheme"))?;
        let (username, host) = match authority.rsplit_once('@') {
            Some((user, host)) => (Some(user.to_owned()).filter(|u| !u.is_empty()), host),
            None => (None, authority),
        };
        if host.is_empty() || host.contains('/') {
            return Err(invalid("missing host"));
        }
        if path.is_empty() {
            return Err(invalid("missing repository path"));
        }
        Ok(GitUrl { scheme: Scheme::Ssh, host: host.to_owned(), port: 22, username, redacted: redact_url(url) })
    }

    pub fn parse(url: &str) -> Result<Self, GitError> {
        let invalid = |reason: &str| GitError::InvalidUrl { url: redact_url(url), reason: reason.to_owned() };
        let (scheme_text, rest) = url.split_once("://").ok_or_else(|| invalid("missing scheme"))?;
        let (scheme, default_port) = match scheme_text.to_ascii_lowercase().as_str() {
            "http" => (Scheme::Http, 80),
            "https" => (Scheme::Https, 443),
            "ssh" => (Scheme::Ssh, 22),
            _ => return Err(invalid("scheme must be http, https or ssh")),
        };
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("contains whitespace or control characters"));
        }
        let authority_end = rest.find('/').unwrap_or(rest.len());
        let (authority, path) = rest.split_at(authority_end);
        if path.len() <= 1 {
            return Err(invalid("missing repository path"));
        }
        let (userinfo, host_port) = match authority.rsplit_once('@') {
            Some((userinfo, host_port)) => (Some(userinfo), host_port),
            None => (None, authority),
        };
        let (host, port_text) = if let Some(bracketed) = host_port.strip_prefix('[') {
            let (host, after) = bracketed.split_once(']').ok_or_else(|| invalid("unclosed '[' in host"))?;
            let port = match after.strip_prefix(':') {
                Some(port) => Some(port),
                None if after.is_empty() => None,
                None => return Err(invalid("garbage after IPv6 host")),
            };
            (host, port)
        } else {
            match host_port.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (host_port, None),
            }
        };
        if host.is_empty() {
            return Err(invalid("missing host"));
        }
        let port = match port_text {
            None | Some("") => default_port,
            Some(text) => text.parse::<u16>().map_err(|_| invalid("port is not a number"))?,
        };
        let username = userinfo.map(|u| u.split_once(':').map_or(u, |(user, _)| user)).filter(|u| !u.is_empty()).map(str::to_owned);
        Ok(GitUrl { scheme, host: host.to_owned(), port, username, redacted: redact_url(url) })
    }
}

/// Replaces the secret part of a URL's userinfo: a password always, and for HTTP(S) a lone
/// user name too, since `https://TOKEN@host/` is a common way to pass a token. SSH user names
/// (`ssh://git@host/`) are kept: they are not secret and help reading errors.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    let is_ssh = scheme.eq_ignore_ascii_case("ssh");
    let redacted_userinfo = match userinfo.split_once(':') {
        Some((user, _)) if is_ssh => format!("{user}:{REDACTED}"),
        Some(_) => REDACTED.to_owned(),
        None if is_ssh => userinfo.to_owned(),
        None => REDACTED.to_owned(),
    };
    format!("{scheme}://{redacted_userinfo}@{host}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts_and_ports() {
        let u = GitUrl::parse("https://example.com/org/repo.git").unwrap();
        assert_eq!((u.scheme, u.host.as_str(), u.port), (Scheme::Https, "example.com", 443));
        let u = GitUrl::parse("ssh://git@127.0.0.1:2222/srv/repo.git").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.username.as_deref()), ("127.0.0.1", 2222, Some("git")));
        let u = GitUrl::parse("http://[::1]:8080/r.git").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 8080));
    }

    #[test]
    fn rejects_bad_urls_without_leaking_secrets() {
        for bad in ["git@github.com:org/repo.git", "ftp://h/r", "https://h", "https://:443/r", "https://h:x/r", "https://h/r r"] {
            assert!(matches!(GitUrl::parse(bad), Err(GitError::InvalidUrl { .. })), "{bad}");
        }
        let err = GitUrl::parse("https://user:s3cret@h:notaport/r").unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }

    #[test]
    fn remote_base_urls() {
        let u = GitUrl::parse_remote_base("git@github.com:org/repo").unwrap();
        assert_eq!((u.scheme, u.host.as_str(), u.port, u.username.as_deref()), (Scheme::Ssh, "github.com", 22, Some("git")));
        let u = GitUrl::parse_remote_base("file:///srv/repo.git").unwrap();
        assert_eq!(u.scheme, Scheme::File);
        let u = GitUrl::parse_remote_base("https://h/org/repo").unwrap();
        assert_eq!((u.scheme, u.port), (Scheme::Https, 443));
        for bad in ["file://", "noscheme/path", "git@:path", "git@host:", "https://h/r r"] {
            assert!(GitUrl::parse_remote_base(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn redaction() {
        assert_eq!(redact_url("https://user:pw@h/r"), "https://redacted@h/r");
        assert_eq!(redact_url("https://token@h/r"), "https://redacted@h/r");
        assert_eq!(redact_url("ssh://git@h/r"), "ssh://git@h/r");
        assert_eq!(redact_url("ssh://git:pw@h/r"), "ssh://git:redacted@h/r");
        assert_eq!(redact_url("https://h/a@b"), "https://h/a@b");
    }
}
