# syntax=docker/dockerfile:1
# Vigil: build the TypeScript in one stage, run the compiled dist/ in a slim
# one with production dependencies only, as a non-root user.
#
#   docker build -t vigil:local .
#   docker run --rm vigil:local check --config /opt/vigil/zones/examples/vigil.yaml
#
# Port 53: the image does NOT setcap the node binary. Run the container with
# the namespaced sysctl net.ipv4.ip_unprivileged_port_start=53 (docker-compose.yml
# does) or publish 53 onto a port >= 1024 the config listens on. Why:
# deploy/README.md, "Port 53 without root".

ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /src
# Dependencies first, so that a source change does not reinstall them.
# --ignore-scripts: the package's `prepare` step compiles, and the sources are
# not here yet; `npm run build` below does it once they are.
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY cli ./cli
COPY server ./server
COPY zones ./zones
COPY probes ./probes
RUN npm run build

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /opt/vigil
# A fixed uid/gid (not 1000, which is `node` and often a host user), so that
# secret files and Kubernetes runAsUser can name it.
RUN groupadd --system --gid 10053 vigil \
 && useradd --system --uid 10053 --gid vigil --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin vigil
COPY package.json package-lock.json ./
# The runtime dependencies are pure JavaScript: no install scripts to run.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force
COPY --from=build /src/dist ./dist
# `vigil` on the PATH, for `docker-compose exec vigil-ams vigil state ...`.
RUN chmod 755 dist/cli/vigil.js && ln -s /opt/vigil/dist/cli/vigil.js /usr/local/bin/vigil
# The bundled examples, for `check` and a first `serve` without a mounted config.
COPY zones/examples ./zones/examples
USER 10053:10053
# DNS (UDP and TCP), admin API, metrics: the ports deploy/vigil.yaml uses.
EXPOSE 53/udp 53/tcp 8053/tcp 9153/tcp
ENTRYPOINT ["node", "/opt/vigil/dist/cli/vigil.js"]
CMD ["serve", "--config", "/etc/vigil/vigil.yaml"]
