#!/usr/bin/env bash
# `npm start`: builds the engine, the npm package and the chat app (installing what a fresh
# machine lacks), then serves the app and its bundled test model at http://localhost:8080
# (PORT overrides).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-tools.sh

# npm ci wipes node_modules: only when the lock file changed since the last install.
npm_install() { # dir
  if [ ! -f "$1/node_modules/.package-lock.json" ] || [ "$1/package-lock.json" -nt "$1/node_modules/.package-lock.json" ]; then
    (cd "$1" && npm ci --no-audit --no-fund)
  fi
}

npm_install .
npm run build
npm_install www
(cd www && npm run build)
exec node www/scripts/serve.mjs www/dist
