# Both binaries in one image: build on Debian bookworm with the same Makefile, run on a slim runtime as a
# non-root user. The command is chosen per container (the chart runs limen-controller and
# limen-dataplane from this one image); by default it starts the data plane.
FROM debian:bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
      build-essential pkg-config libuv1-dev libssl-dev libcjson-dev libyaml-dev libpcre2-dev zlib1g-dev \
      libcurl4-openssl-dev libnghttp2-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN make bin/limen-dataplane bin/limen-controller

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends \
      libuv1 libssl3 libcjson1 libyaml-0-2 libpcre2-8-0 libcurl4 libnghttp2-14 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/limen --create-home limen
COPY --from=build /src/bin/limen-dataplane /src/bin/limen-controller /usr/local/bin/
USER 10001
# proxy, data-plane status, controller endpoints
EXPOSE 8000 8100 10254
CMD ["/usr/local/bin/limen-dataplane", "--state-dir", "/var/lib/limen"]
