#!/usr/bin/env bash
# `npm start`: builds the engine, the npm package and the chat app (installing what a fresh
# machine lacks), then serves the app and its bundled test model at http://localhost:8080
# (PORT overrides).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-tools.sh

# Installs only when the lock file changed since the last install. www uses npm install,
# not npm ci: the registry reached here lacks some of Rollup's optional per-platform
# packages, so its lock file cannot list them and npm ci refuses it.
npm_install() { # dir, npm command
  if [ ! -f "$1/node_modules/.package-lock.json" ] || [ "$1/package-lock.json" -nt "$1/node_modules/.package-lock.json" ]; then
    (cd "$1" && npm "$2" --no-audit --no-fund)
  fi
}

npm_install . ci
npm run build
npm_install www install
(cd www && npm run build)
exec node www/scripts/serve.mjs www/dist
