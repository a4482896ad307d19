# syntax=docker/dockerfile:1
#
# The project's one image: ghcr.io/canal-operator/canal-operator:<version>
#
#   /usr/local/bin/canal-operator   the controller (the default command:
#                                   `canal-operator run`)
#   /usr/local/bin/canal-server     what the operator's pods run: their
#                                   container sets command
#                                   [/usr/local/bin/canal-server], args [run]
#
# Tags: the crate version from Cargo.toml (`0.1.0`, what `canal-operator`
# uses as its default --server-image and the Helm chart's appVersion), and
# `sha-<short commit>` for every build of main. One image serves both roles,
# so the operator and the servers it starts are always the same release.
#
#   docker build -t ghcr.io/canal-operator/canal-operator:0.1.0 \
#     --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" .
#
# Build: the official Rust image on Debian 12 (bookworm), so that the
# binaries need no newer glibc than the runtime's (they link libc, libm,
# libgcc_s dynamically, nothing else: TLS is rustls, no OpenSSL).
# Runtime: distroless cc-debian12 (glibc, libgcc, CA certificates; no
# shell, no package manager) as the nonroot user 65532.

ARG RUST_VERSION=1.95
# The runtime base. scripts/image, on a machine without registry access,
# passes one it assembles from Debian 12's packages with distroless cc's
# content (glibc, libgcc, libstdc++, libgomp, OpenSSL's libraries, CA
# certificates, tzdata, netbase, the nonroot user 65532).
ARG BASE_IMAGE=gcr.io/distroless/cc-debian12:nonroot
# Where the two binaries come from: `build` compiles them in the Rust image
# (the default); `prebuilt` copies them from dist/image/ in the build context
# (scripts/image: built by cargo on the host from the same Cargo.lock, debug
# sections compressed the same way). The stage not named is never built.
ARG BINARIES=build

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# What `cargo build --bin` reads; benches/ because Cargo.toml names its
# [[bench]] targets (cargo checks that they exist).
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto/ proto/
COPY benches/ benches/
COPY src/ src/
# Caches: the crates.io downloads (any platform) and target/ (one per
# platform, so a multi-platform build never reuses the other's objects).
# The release profile keeps line tables for readable backtraces; they stay,
# compressed (canal-operator 160 -> 52 MB, canal-server 140 -> 38 MB).
ARG TARGETARCH
RUN --mount=type=cache,id=canal-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=canal-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=canal-target-${TARGETARCH},target=/src/target,sharing=locked \
    cargo build --release --locked --bin canal-server --bin canal-operator \
    && mkdir -p /out \
    && for bin in canal-server canal-operator; do \
         objcopy --compress-debug-sections=zlib "target/release/$bin" "/out/$bin" || exit 1; \
       done

FROM scratch AS prebuilt
COPY dist/image/canal-server dist/image/canal-operator /out/

FROM ${BINARIES} AS binaries

FROM ${BASE_IMAGE}
ARG BASE_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED
LABEL org.opencontainers.image.title="canal-operator" \
      org.opencontainers.image.description="canal-operator and canal-server: highly available canal (MySQL/MariaDB binlog CDC) on Kubernetes" \
      org.opencontainers.image.source="https://github.com/canal-operator/canal-operator" \
      org.opencontainers.image.url="https://github.com/canal-operator/canal-operator" \
      org.opencontainers.image.documentation="https://github.com/canal-operator/canal-operator/blob/main/docs/operator.md" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="canal-operator" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
COPY --from=binaries --chown=0:0 --chmod=0755 /out/canal-server /out/canal-operator /usr/local/bin/
USER 65532:65532
# No ENTRYPOINT: a container picks its binary by command (the server pods
# set command [/usr/local/bin/canal-server]); without one it is the operator.
CMD ["/usr/local/bin/canal-operator", "run"]
