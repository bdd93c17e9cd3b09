# Build on Debian bookworm with the same Makefile, run on a slim runtime as a non-root user.
FROM debian:bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
      build-essential pkg-config libuv1-dev libssl-dev libcjson-dev libyaml-dev libpcre2-dev zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN make bin/limen-dataplane

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends \
      libuv1 libssl3 libcjson1 libyaml-0-2 libpcre2-8-0 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/limen --create-home limen
COPY --from=build /src/bin/limen-dataplane /usr/local/bin/limen-dataplane
USER 10001
EXPOSE 8000 8100
ENTRYPOINT ["/usr/local/bin/limen-dataplane"]
CMD ["--state-dir", "/var/lib/limen"]
