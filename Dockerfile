# The ferroflux image: one statically linked binary on an empty base, because no registry is
# reachable to pull a base image from. Build it with hack/image.sh, which compiles the binary and
# stages this build context:
#   ferroflux            the static binary (glibc, OpenSSL, libgit2, libssh2, zlib all linked in)
#   ca-certificates.crt  the CA bundle, for Git over HTTPS
#   passwd, group        entries for root and nobody (65534), so the user has a name and a home
#   nsswitch.conf        "hosts: files dns" for the resolver built into the static glibc
FROM scratch
COPY passwd group nsswitch.conf /etc/
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY ferroflux /ferroflux
# OpenSSL (inside libgit2) looks for its CA bundle at the build machine's OPENSSLDIR unless told.
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65534:65534
ENTRYPOINT ["/ferroflux"]
