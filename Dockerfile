# Windfall image on the current Node LTS (26). Build: docker build -t windfall .
FROM node:26-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY workers ./workers
COPY migrations ./migrations
COPY bench ./bench
RUN npm run build && npm prune --omit=dev --ignore-scripts

FROM node:26-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY bin ./bin
USER node
# the default command is a reward worker (workers/reward-worker.ts: `windfall worker` behind the CLI's process guards);
# the API runs dist/workers/api-server.js, any other command bin/windfall.js (e.g. `bin/windfall.js migrate`)
ENTRYPOINT ["node"]
CMD ["dist/workers/reward-worker.js"]
