//! Pure logic on Git references: which ref a `GitRepository` asks for, and which commit the
//! remote's advertised refs resolve it to. No I/O here.

use std::cmp::Ordering;

use super::GitError;

/// Flux's default branch when `spec.ref` is absent or empty.
pub const DEFAULT_BRANCH: &str = "master";

/// The reference fields of a `GitRepository`'s `spec.ref`, as the user wrote them.
/// Empty strings count as unset, as they do in Flux.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitRefSpec {
    pub branch: Option<String>,
    pub tag: Option<String>,
    pub semver: Option<String>,
    pub name: Option<String>,
    pub commit: Option<String>,
}

/// What to check out, after Flux's precedence: commit > name > semver > tag > branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefSelector {
    /// A commit SHA, optionally on a branch (which then names the revision and bounds the fetch).
    Commit {
        sha: String,
        branch: Option<String>,
    },
    /// A full reference name such as `refs/heads/main` or `refs/pull/1/head`.
    Name(String),
    /// A semver constraint matched against tags.
    Semver(String),
    Tag(String),
    Branch(String),
}

impl GitRefSpec {
    /// The selector that Flux's precedence picks from these fields.
    pub fn selector(&self) -> RefSelector {
        fn set(field: &Option<String>) -> Option<String> {
            field.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned)
        }
        if let Some(sha) = set(&self.commit) {
            return RefSelector::Commit { sha: sha.to_ascii_lowercase(), branch: set(&self.branch) };
        }
        if let Some(name) = set(&self.name) {
            return RefSelector::Name(name);
        }
        if let Some(constraint) = set(&self.semver) {
            return RefSelector::Semver(constraint);
        }
        if let Some(tag) = set(&self.tag) {
            return RefSelector::Tag(tag);
        }
        RefSelector::Branch(set(&self.branch).unwrap_or_else(|| DEFAULT_BRANCH.to_owned()))
    }
}

/// One reference advertised by a remote, as `git ls-remote` prints it. Annotated tags appear
/// twice: `refs/tags/v1` (the tag object) and `refs/tags/v1^{}` (the commit it points to).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RemoteRef {
    pub name: String,
    /// Lowercase hex object id.
    pub oid: String,
}

/// How much history a fetch must bring for a resolved reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchPlan {
    /// Fetch exactly this remote reference, depth 1.
    ShallowRef(String),
    /// Fetch the full history of these remote references (a commit that is not a ref tip can
    /// only be found in history: protocol v0/v1 servers refuse to serve a bare SHA by default).
    History(Vec<String>),
}

/// A reference resolved to a commit: what the reconciler compares with the stored artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedRef {
    /// The part of the revision before `@`: branch or tag short name, full name for `spec.ref.name`,
    /// `None` for a bare commit.
    pub revision_name: Option<String>,
    /// Lowercase hex commit id.
    pub commit: String,
    pub fetch_plan: FetchPlan,
    /// True for `spec.ref.commit`: the fetch must produce exactly `commit`, even if the ref it
    /// was found on moved meanwhile.
    pub pinned: bool,
}

impl ResolvedRef {
    /// The Flux revision string: `main@sha1:<hex>`, `v1.2.0@sha1:<hex>`,
    /// `refs/pull/1/head@sha1:<hex>` or `sha1:<hex>`.
    pub fn revision(&self) -> String {
        format_revision(self.revision_name.as_deref(), &self.commit)
    }
}

/// Formats a Flux revision; the hash algorithm follows from the length of the id.
pub fn format_revision(name: Option<&str>, commit: &str) -> String {
    let algorithm = if commit.len() == 64 { "sha256" } else { "sha1" };
    match name {
        Some(name) => format!("{name}@{algorithm}:{commit}"),
        None => format!("{algorithm}:{commit}"),
    }
}

const PEELED_SUFFIX: &str = "^{}";

/// The commit a reference points to, peeling an annotated tag through its `^{}` entry.
fn peeled_target<'a>(refs: &'a [RemoteRef], full_name: &str) -> Option<&'a str> {
    let peeled_name = format!("{full_name}{PEELED_SUFFIX}");
    refs.iter().find(|r| r.name == peeled_name).or_else(|| refs.iter().find(|r| r.name == full_name)).map(|r| r.oid.as_str())
}

/// Resolves a selector against the refs a remote advertised. `url` (already redacted) only
/// goes into error messages.
pub fn resolve(refs: &[RemoteRef], selector: &RefSelector, url: &str) -> Result<ResolvedRef, GitError> {
    let not_found = |refname: &str| GitError::RefNotFound { url: url.to_owned(), refname: refname.to_owned() };
    let is_commit = matches!(selector, RefSelector::Commit { .. });
    if !is_commit && !refs.iter().any(|r| r.name.starts_with("refs/")) {
        return Err(GitError::EmptyRepository { url: url.to_owned() });
    }
    match selector {
        RefSelector::Branch(branch) => {
            let full = format!("refs/heads/{branch}");
            let commit = peeled_target(refs, &full).ok_or_else(|| not_found(&full))?;
            Ok(ResolvedRef { revision_name: Some(branch.clone()), commit: commit.to_owned(), fetch_plan: FetchPlan::ShallowRef(full), pinned: false })
        }
        RefSelector::Tag(tag) => {
            let full = format!("refs/tags/{tag}");
            let commit = peeled_target(refs, &full).ok_or_else(|| not_found(&full))?;
            Ok(ResolvedRef { revision_name: Some(tag.clone()), commit: commit.to_owned(), fetch_plan: FetchPlan::ShallowRef(full), pinned: false })
        }
        RefSelector::Name(name) => {
            if !name.starts_with("refs/") {
                return Err(GitError::InvalidRef { message: format!("reference name '{name}' must start with 'refs/'") });
            }
            let commit = peeled_target(refs, name).ok_or_else(|| not_found(name))?;
            Ok(ResolvedRef { revision_name: Some(name.clone()), commit: commit.to_owned(), fetch_plan: FetchPlan::ShallowRef(name.clone()), pinned: false })
        }
        RefSelector::Semver(constraint) => {
            let tag = highest_matching_tag(refs, constraint)?.ok_or_else(|| GitError::NoSemverMatch { url: url.to_owned(), constraint: constraint.clone() })?;
            let full = format!("refs/tags/{tag}");
            let commit = peeled_target(refs, &full).ok_or_else(|| not_found(&full))?;
            Ok(ResolvedRef { revision_name: Some(tag), commit: commit.to_owned(), fetch_plan: FetchPlan::ShallowRef(full), pinned: false })
        }
        RefSelector::Commit { sha, branch } => resolve_commit(refs, sha, branch.as_deref()),
    }
}

/// A commit selector is resolved without asking the remote: the SHA is the answer. The fetch
/// plan is shallow when the commit happens to be the tip of the branch (or of any advertised
/// ref when no branch is given), else the branch's (or all branches' and tags') history.
pub fn resolve_commit(refs: &[RemoteRef], sha: &str, branch: Option<&str>) -> Result<ResolvedRef, GitError> {
    validate_commit_sha(sha)?;
    let sha = sha.to_ascii_lowercase();
    let fetch_plan = match branch {
        Some(branch) => {
            let full = format!("refs/heads/{branch}");
            if peeled_target(refs, &full) == Some(sha.as_str()) { FetchPlan::ShallowRef(full) } else { FetchPlan::History(vec![full]) }
        }
        None => match refs.iter().find(|r| r.oid == sha && !r.name.ends_with(PEELED_SUFFIX) && r.name.starts_with("refs/")) {
            Some(tip) => FetchPlan::ShallowRef(tip.name.clone()),
            None => FetchPlan::History(vec!["refs/heads/*".to_owned(), "refs/tags/*".to_owned()]),
        },
    };
    Ok(ResolvedRef { revision_name: branch.map(str::to_owned), commit: sha, fetch_plan, pinned: true })
}

/// Flux requires a full commit id: a short one could match several commits.
pub fn validate_commit_sha(sha: &str) -> Result<(), GitError> {
    let full_length = sha.len() == 40 || sha.len() == 64;
    if full_length && sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(GitError::InvalidRef { message: format!("'{sha}' is not a full hexadecimal commit SHA") })
    }
}

/// The tag name (without `refs/tags/`) of the highest version matching the constraint, or
/// `None`. Tags that are not versions are skipped, as in Flux.
pub fn highest_matching_tag(refs: &[RemoteRef], constraint: &str) -> Result<Option<String>, GitError> {
    let constraint = SemverConstraint::parse(constraint)?;
    let mut best: Option<(semver::Version, &str)> = None;
    for tag in refs.iter().filter_map(|r| r.name.strip_prefix("refs/tags/")) {
        if tag.ends_with(PEELED_SUFFIX) {
            continue;
        }
        let Some(version) = parse_tag_version(tag) else {
            continue;
        };
        if !constraint.matches(&version) {
            continue;
        }
        let better = match &best {
            None => true,
            // Equal versions (`v1.0.0` and `1.0.0`): the name decides, so the choice is stable.
            Some((current, current_tag)) => match version.cmp(current) {
                Ordering::Greater => true,
                Ordering::Equal => tag > *current_tag,
                Ordering::Less => false,
            },
        };
        if better {
            best = Some((version, tag));
        }
    }
    Ok(best.map(|(_, tag)| tag.to_owned()))
}

/// Parses a tag as a version the way Flux's semver library does: an optional leading `v`, and
/// `1` or `1.2` standing for `1.0.0` and `1.2.0`.
pub fn parse_tag_version(tag: &str) -> Option<semver::Version> {
    let bare = tag.strip_prefix('v').or_else(|| tag.strip_prefix('V')).unwrap_or(tag);
    let core_end = bare.find(['-', '+']).unwrap_or(bare.len());
    let (core, rest) = bare.split_at(core_end);
    let parts = core.split('.').count();
    let padded = match parts {
        1 => format!("{core}.0.0{rest}"),
        2 => format!("{core}.0{rest}"),
        _ => bare.to_owned(),
    };
    semver::Version::parse(&padded).ok()
}

/// A constraint in the syntax Flux accepts (Masterminds/semver): comparators separated by spaces
/// or commas are ANDed, `||` ORs groups. Each group is handed to the `semver` crate, whose
/// comparators (`>=`, `~`, `^`, `1.x`, `*`) cover the common forms. Hyphen ranges
/// (`1.0 - 2.0`) are not supported and are reported as invalid.
#[derive(Debug, Clone)]
pub struct SemverConstraint {
    alternatives: Vec<semver::VersionReq>,
}

impl SemverConstraint {
    pub fn parse(text: &str) -> Result<Self, GitError> {
        let invalid = |detail: String| GitError::InvalidRef { message: format!("semver constraint '{text}' is invalid: {detail}") };
        let mut alternatives = Vec::new();
        for group in text.split("||") {
            let comparators = split_comparators(group);
            if comparators.is_empty() {
                return Err(invalid("empty comparator group".to_owned()));
            }
            if comparators.iter().any(|c| c == "-") {
                return Err(invalid("hyphen ranges are not supported".to_owned()));
            }
            let joined = comparators.join(", ");
            let req = semver::VersionReq::parse(&joined).map_err(|e| invalid(e.to_string()))?;
            alternatives.push(req);
        }
        Ok(Self { alternatives })
    }

    pub fn matches(&self, version: &semver::Version) -> bool {
        self.alternatives.iter().any(|req| req.matches(version))
    }
}

/// Splits `">= 1.0 <2, !=1.5"` into `[">=1.0", "<2", "!=1.5"]`: an operator separated from
/// its version by spaces is glued back to it, and a leading `v` on versions is dropped.
fn split_comparators(group: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut pending_operator = String::new();
    for token in group.split([' ', ',', '\t']).filter(|t| !t.is_empty()) {
        let is_operator_only = token.chars().all(|c| matches!(c, '<' | '>' | '=' | '~' | '^' | '!'));
        if is_operator_only {
            pending_operator.push_str(token);
            continue;
        }
        let op_len = token.find(|c: char| !matches!(c, '<' | '>' | '=' | '~' | '^' | '!')).unwrap_or(token.len());
        let (op, version) = token.split_at(op_len);
        let version = version.strip_prefix('v').unwrap_or(version);
        out.push(format!("{pending_operator}{op}{version}"));
        pending_operator.clear();
    }
    if !pending_operator.is_empty() {
        out.push(pending_operator);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(name: &str, oid: &str) -> RemoteRef {
        RemoteRef { name: name.to_owned(), oid: oid.to_owned() }
    }

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const C: &str = "cccccccccccccccccccccccccccccccccccccccc";
    const T: &str = "1111111111111111111111111111111111111111";

    fn sample() -> Vec<RemoteRef> {
        vec![
            r("HEAD", A),
            r("refs/heads/main", A),
            r("refs/heads/dev", B),
            r("refs/tags/v1.0.0", A),
            r("refs/tags/v1.1.0", T),
            r("refs/tags/v1.1.0^{}", B),
            r("refs/tags/2.0.0-rc.1", C),
            r("refs/tags/not-a-version", C),
            r("refs/pull/7/head", C),
        ]
    }

    #[test]
    fn precedence_follows_flux() {
        let all = GitRefSpec {
            branch: Some("main".into()),
            tag: Some("v1".into()),
            semver: Some(">=1".into()),
            name: Some("refs/heads/x".into()),
            commit: Some(A.to_uppercase()),
        };
        assert_eq!(all.selector(), RefSelector::Commit { sha: A.into(), branch: Some("main".into()) });
        let no_commit = GitRefSpec { commit: None, ..all.clone() };
        assert_eq!(no_commit.selector(), RefSelector::Name("refs/heads/x".into()));
        let no_name = GitRefSpec { name: None, ..no_commit };
        assert_eq!(no_name.selector(), RefSelector::Semver(">=1".into()));
        let no_semver = GitRefSpec { semver: Some(String::new()), ..no_name };
        assert_eq!(no_semver.selector(), RefSelector::Tag("v1".into()));
        let no_tag = GitRefSpec { tag: None, ..no_semver };
        assert_eq!(no_tag.selector(), RefSelector::Branch("main".into()));
        assert_eq!(GitRefSpec::default().selector(), RefSelector::Branch("master".into()));
    }

    #[test]
    fn branch_and_tags_resolve_with_flux_revisions() {
        let refs = sample();
        let main = resolve(&refs, &RefSelector::Branch("main".into()), "u").unwrap();
        assert_eq!(main.revision(), format!("main@sha1:{A}"));
        assert_eq!(main.fetch_plan, FetchPlan::ShallowRef("refs/heads/main".into()));
        // The annotated tag resolves to the commit, not the tag object.
        let tag = resolve(&refs, &RefSelector::Tag("v1.1.0".into()), "u").unwrap();
        assert_eq!(tag.revision(), format!("v1.1.0@sha1:{B}"));
        let name = resolve(&refs, &RefSelector::Name("refs/pull/7/head".into()), "u").unwrap();
        assert_eq!(name.revision(), format!("refs/pull/7/head@sha1:{C}"));
    }

    #[test]
    fn no_refs_is_an_empty_repository() {
        let err = resolve(&[], &RefSelector::Branch("main".into()), "u").unwrap_err();
        assert!(matches!(err, GitError::EmptyRepository { .. }), "{err}");
    }

    #[test]
    fn missing_branch_is_ref_not_found() {
        let err = resolve(&sample(), &RefSelector::Branch("nope".into()), "https://host/repo").unwrap_err();
        assert_eq!(err.to_string(), "unable to clone 'https://host/repo': couldn't find remote ref 'refs/heads/nope'");
    }

    #[test]
    fn semver_picks_highest_match_and_skips_prereleases() {
        let refs = sample();
        let s = resolve(&refs, &RefSelector::Semver(">=1.0.0".into()), "u").unwrap();
        assert_eq!(s.revision(), format!("v1.1.0@sha1:{B}"));
        let s = resolve(&refs, &RefSelector::Semver("1.0.x".into()), "u").unwrap();
        assert_eq!(s.revision_name.as_deref(), Some("v1.0.0"));
        let s = resolve(&refs, &RefSelector::Semver(">= 2.0.0-rc.0".into()), "u").unwrap();
        assert_eq!(s.revision_name.as_deref(), Some("2.0.0-rc.1"));
        let s = resolve(&refs, &RefSelector::Semver("<1.1 || >=3".into()), "u").unwrap();
        assert_eq!(s.revision_name.as_deref(), Some("v1.0.0"));
        let err = resolve(&refs, &RefSelector::Semver(">=5".into()), "u").unwrap_err();
        assert!(matches!(err, GitError::NoSemverMatch { .. }), "{err}");
        let err = resolve(&refs, &RefSelector::Semver("1.0 - 2.0".into()), "u").unwrap_err();
        assert!(matches!(err, GitError::InvalidRef { .. }), "{err}");
    }

    #[test]
    fn tag_versions_parse_like_flux() {
        assert_eq!(parse_tag_version("v1.2.3"), Some(semver::Version::new(1, 2, 3)));
        assert_eq!(parse_tag_version("1.2"), Some(semver::Version::new(1, 2, 0)));
        assert_eq!(parse_tag_version("v2"), Some(semver::Version::new(2, 0, 0)));
        assert!(parse_tag_version("1.2-rc.1").is_some_and(|v| !v.pre.is_empty()));
        assert_eq!(parse_tag_version("release"), None);
    }

    #[test]
    fn commit_resolution_plans_the_fetch() {
        let refs = sample();
        let tip = resolve(&refs, &RefSelector::Commit { sha: B.into(), branch: Some("dev".into()) }, "u").unwrap();
        assert_eq!(tip.revision(), format!("dev@sha1:{B}"));
        assert_eq!(tip.fetch_plan, FetchPlan::ShallowRef("refs/heads/dev".into()));
        let deep = resolve(&refs, &RefSelector::Commit { sha: C.into(), branch: Some("main".into()) }, "u").unwrap();
        assert_eq!(deep.fetch_plan, FetchPlan::History(vec!["refs/heads/main".into()]));
        let bare = resolve(&[], &RefSelector::Commit { sha: C.into(), branch: None }, "u").unwrap();
        assert_eq!(bare.revision(), format!("sha1:{C}"));
        assert!(matches!(bare.fetch_plan, FetchPlan::History(_)));
        assert!(resolve(&refs, &RefSelector::Commit { sha: "abc".into(), branch: None }, "u").is_err());
    }
}
