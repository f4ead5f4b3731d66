# A stand-in for the caddy:2 image where Docker Hub is out of reach: Debian's Caddy on the tests' base
# image, run the way compose.yaml runs caddy:2 (the same Caddyfile at the same path, the same command).
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install --yes --no-install-recommends caddy \
    && rm -rf /var/lib/apt/lists/*
CMD ["caddy", "run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]
