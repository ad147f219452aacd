# Docxy container image: docs/deployment.md, "Container image".
#   docker build -t docxy .
#   docker run -d -p 5000:5000 -v docxy-data:/var/lib/docxy docxy
# The configuration is /etc/docxy/config.yaml (config.example.yaml unless you mount your own);
# DOCXY_* variables override any key.
# Where no image can be pulled, build on a local base instead (docs/deployment.md):
#   docker build --build-arg NODE_IMAGE=docxy-node:24 -t docxy .

# The Node.js base of both stages: any image with node, npm and a `node` user (uid 1000).
ARG NODE_IMAGE=node:24-bookworm-slim

# --- build: compile TypeScript to dist/ ---------------------------------------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# --- runtime: production dependencies and the compiled code only ---------------------------------
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    DOCXY_DATA=/var/lib/docxy
WORKDIR /opt/docxy
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /src/dist ./dist
COPY bin ./bin
COPY config.example.yaml ./
RUN ln -s /opt/docxy/bin/docxy.js /usr/local/bin/docxy \
 && mkdir -p /etc/docxy /var/lib/docxy \
 && cp config.example.yaml /etc/docxy/config.yaml \
 && chown node:node /var/lib/docxy
# The image's unprivileged user (uid 1000). Ports 80 and 443 still bind: Docker sets
# net.ipv4.ip_unprivileged_port_start=0 inside containers.
USER node
EXPOSE 5000 443 80
VOLUME /var/lib/docxy
CMD ["docxy", "serve", "--config", "/etc/docxy/config.yaml"]
