# The image README's Kubernetes recipe runs: `docker build -t tcpshake:latest .`
# Build stage: the release binary, from the lock file. Run stage: Debian slim and the
# binary alone (tcpshake talks netlink, raw and packet sockets itself: no nft, no libpcap).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo install --locked --path . --root /out

FROM debian:bookworm-slim
COPY --from=build /out/bin/tcpshake /usr/local/bin/tcpshake
# Needs CAP_NET_RAW and CAP_NET_ADMIN at run time (securityContext in the recipe).
ENTRYPOINT ["tcpshake"]
