//! The one error of a build: every failure names the file (or entry) it comes from, worded as
//! kustomize words it where kustomize has the same failure.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {message}", file.display())]
    Yaml { file: PathBuf, message: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("no kustomization file found: unable to find one of 'kustomization.yaml', 'kustomization.yml' or 'Kustomization' in directory '{}'", dir.display())]
    NoKustomization { dir: PathBuf },
    #[error("invalid kustomization {}: {message}", file.display())]
    InvalidKustomization { file: PathBuf, message: String },
    #[error("{}: field '{field}' {why}", file.display())]
    Unsupported { file: PathBuf, field: &'static str, why: &'static str },
    #[error("security; file '{}' is not in or below '{}'", path.display(), root.display())]
    PathEscape { path: PathBuf, root: PathBuf },
    #[error("cycle detected: {} includes itself", dir.display())]
    Cycle { dir: PathBuf },
    #[error("may not add resource with an already registered id: {id}")]
    DuplicateId { id: String },
    #[error("{}: {message}", file.display())]
    Patch { file: PathBuf, message: String },
    #[error("{}: {message}", file.display())]
    Generator { file: PathBuf, message: String },
    #[error("{}: {message}", file.display())]
    Replacement { file: PathBuf, message: String },
    #[error("{}: replicas: {message}", file.display())]
    Replicas { file: PathBuf, message: String },
    #[error("{}: images: {message}", file.display())]
    Images { file: PathBuf, message: String },
    #[error("{}: sortOptions: {message}", file.display())]
    SortOptions { file: PathBuf, message: String },
    #[error("remote resource '{url}': remote resources are not enabled")]
    Remote { url: String },
    #[error("remote resource '{url}': {message}")]
    RemoteGit { url: String, message: String },
    #[error(
        "remote resource '{url}': single files over HTTP are not fetched by ferroflux's kustomize engine; name a git repository instead (https://host/org/repo//path?ref=...)"
    )]
    RemoteFile { url: String },
    #[error("accumulating resources from '{entry}' in {}: no such file or directory", dir.display())]
    MissingResource { entry: String, dir: PathBuf },
    #[error("{}: {message}", file.display())]
    Component { file: PathBuf, message: String },
    #[error("{}: vars: {message}", file.display())]
    Vars { file: PathBuf, message: String },
    #[error("{}: {message}", file.display())]
    Plugin { file: PathBuf, message: String },
    #[error("{}: {message}", file.display())]
    Filter { file: PathBuf, message: String },
    #[error("{}: {message}", file.display())]
    NameReference { file: PathBuf, message: String },
}
