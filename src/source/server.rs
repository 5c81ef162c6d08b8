//! The artifact HTTP server: serves the files under the storage root, read-only, to the other
//! controllers (as source-controller's `:9090` file server does).
//!
//! Only GET and HEAD of an exact regular file are answered. There is no directory listing,
//! hidden names (dot files, including storage's temp files) are never served, and the request
//! path is checked on its raw (undecoded and decoded) form: `..`, `.`, empty segments,
//! backslashes, NUL and absolute tricks are refused with 400, and a file reached through a
//! symlink that leaves the root is 404.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("binding artifact server to {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("artifact server failed: {0}")]
    Serve(#[source] io::Error),
    #[error("storage root '{}' is unusable: {source}", path.display())]
    Root {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

#[derive(Clone)]
struct ServerState {
    /// Canonical root, so symlink targets can be checked against it.
    root: PathBuf,
}

/// The router alone, for embedding in another server.
pub fn router(root: &Path) -> Result<Router, ServerError> {
    let root = std::fs::canonicalize(root).map_err(|source| ServerError::Root { path: root.to_path_buf(), source })?;
    Ok(Router::new().fallback(serve_file).with_state(ServerState { root }))
}

/// A bound server; `local_addr` tells the port when bound to port 0.
pub struct ArtifactServer {
    listener: TcpListener,
    router: Router,
}

impl ArtifactServer {
    pub async fn bind(root: &Path, addr: SocketAddr) -> Result<Self, ServerError> {
        let router = router(root)?;
        let listener = TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { addr, source })?;
        Ok(ArtifactServer { listener, router })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServerError> {
        axum::serve(self.listener, self.router).with_graceful_shutdown(shutdown).await.map_err(ServerError::Serve)
    }

    pub async fn run(self) -> Result<(), ServerError> {
        self.run_until(std::future::pending()).await
    }
}

/// Binds `addr` and serves `root` forever.
pub async fn serve(root: PathBuf, addr: SocketAddr) -> Result<(), ServerError> {
    ArtifactServer::bind(&root, addr).await?.run().await
}

/// Why a request path is refused.
#[derive(Debug, PartialEq, Eq)]
enum PathRejection {
    /// Malformed or an escape attempt: 400.
    BadRequest,
    /// Well-formed but never served (hidden names, the root itself): 404.
    NotServed,
}

/// Turns the raw request path into components relative to the root. Pure.
fn request_components(raw_path: &str) -> Result<Vec<String>, PathRejection> {
    let Some(rest) = raw_path.strip_prefix('/') else {
        return Err(PathRejection::BadRequest);
    };
    if rest.is_empty() {
        return Err(PathRejection::NotServed);
    }
    let mut components = Vec::new();
    // Split before decoding so an encoded '/' cannot make new segments, and check again after
    // decoding so '%2e%2e' is treated like '..'.
    for raw_segment in rest.split('/') {
        let segment = percent_decode(raw_segment).ok_or(PathRejection::BadRequest)?;
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(PathRejection::BadRequest);
        }
        if segment.contains(['/', '\\', '\0']) || segment.chars().any(char::is_control) {
            return Err(PathRejection::BadRequest);
        }
        if segment.starts_with('.') {
            return Err(PathRejection::NotServed);
        }
        components.push(segment);
    }
    Ok(components)
}

/// Decodes one segment; `None` when it is not UTF-8 or still holds a '%' afterwards: a
/// malformed escape (which `percent-encoding` keeps as text) or a double-encoded one
/// (`%252e`). No artifact path has a '%' (they are Kubernetes names and commit ids).
fn percent_decode(segment: &str) -> Option<String> {
    let decoded = percent_encoding::percent_decode_str(segment).decode_utf8().ok()?;
    (!decoded.contains('%')).then(|| decoded.into_owned())
}

fn status(code: StatusCode) -> Response {
    (code, code.canonical_reason().unwrap_or_default()).into_response()
}

async fn serve_file(State(state): State<ServerState>, request: Request) -> Response {
    let method = request.method().clone();
    if method != Method::GET && method != Method::HEAD {
        let mut response = status(StatusCode::METHOD_NOT_ALLOWED);
        response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let raw_path = request.uri().path().to_owned();
    let components = match request_components(&raw_path) {
        Ok(components) => components,
        Err(PathRejection::BadRequest) => return status(StatusCode::BAD_REQUEST),
        Err(PathRejection::NotServed) => return status(StatusCode::NOT_FOUND),
    };
    let candidate = components.iter().fold(state.root.clone(), |path, c| path.join(c));
    // Resolve symlinks and insist the result is still inside the root.
    let Ok(resolved) = tokio::fs::canonicalize(&candidate).await else {
        return status(StatusCode::NOT_FOUND);
    };
    if !resolved.starts_with(&state.root) {
        tracing::warn!(path = %raw_path, "refused artifact request resolving outside the storage root");
        return status(StatusCode::NOT_FOUND);
    }
    let Ok(file) = tokio::fs::File::open(&resolved).await else {
        return status(StatusCode::NOT_FOUND);
    };
    let Ok(metadata) = file.metadata().await else {
        return status(StatusCode::NOT_FOUND);
    };
    if !metadata.is_file() {
        return status(StatusCode::NOT_FOUND);
    }
    let content_type = if raw_path.ends_with(".tar.gz") || raw_path.ends_with(".tgz") { "application/gzip" } else { "application/octet-stream" };
    let length = metadata.len();
    let body = if method == Method::HEAD { Body::empty() } else { Body::from_stream(file_chunks(file, length)) };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    response
}

/// The file as a stream of chunks, never more than `length` bytes (the size announced in
/// Content-Length, even if the file grew meanwhile; artifacts are replaced by rename, so an
/// open file does not change in practice, and one that shrank ends the body short, which the
/// HTTP server reports by closing the connection).
fn file_chunks(file: tokio::fs::File, length: u64) -> tokio_util::io::ReaderStream<tokio::io::Take<tokio::fs::File>> {
    tokio_util::io::ReaderStream::with_capacity(file.take(length), 64 * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_paths() {
        let ok = |p: &str| request_components(p).unwrap();
        assert_eq!(ok("/gitrepository/ns/name/abc.tar.gz"), vec!["gitrepository", "ns", "name", "abc.tar.gz"]);
        assert_eq!(ok("/a%20b"), vec!["a b"]);
        for bad in [
            "/../etc/passwd",
            "/a/../../x",
            "/%2e%2e/x",
            "/%2E%2E/x",
            "/a/%2e%2e%2fb",
            "/a//b",
            "/a/./b",
            "relative",
            "/a%5c..%5cb",
            "/a%00",
            "/%zz",
            "/a%2fb",
            "/%252e%252e/x",
            "/a%",
            "/a%4",
        ] {
            assert_eq!(request_components(bad), Err(PathRejection::BadRequest), "{bad}");
        }
        for hidden in ["/", "/a/.tmp-x", "/.git/config"] {
            assert_eq!(request_components(hidden), Err(PathRejection::NotServed), "{hidden}");
        }
    }
}
