#!/bin/sh
# The Node that this checkout's npm scripts run (docs/adr/0012-node-toolchain.md).
#
# Every dependency accepts Node 22.22+ on the 22 line, 24, and 26 or newer. A user whose `node` is one of those needs
# nothing from here. When it is older (or an odd line: 23, 25), `npm install` / `npm ci` (the `prepare` step) installs
# the pinned current LTS from the npm registry's `node` package into .toolchain/ and links it as
# node_modules/.bin/node: npm puts that folder first on PATH for every script and for npx, so `npm test`,
# `npm run demo` and `npx windfall` run it, and so does every process they start.
#
#   sh scripts/node-toolchain.sh link          link the pinned Node when the user's is unsupported (else unlink it)
#   sh scripts/node-toolchain.sh bin VERSION   install Node VERSION in .toolchain/ if missing; print its bin folder
#   sh scripts/node-toolchain.sh pinned        print the pinned version
set -eu

PINNED_NODE=26.10.0

root=$(cd "$(dirname "$0")/.." && pwd)
link="$root/node_modules/.bin/node"

say() { printf 'windfall: %s\n' "$*" >&2; }

# Whether every dependency's `engines` accepts Node $1 (x.y.z).
supported() {
  major=${1%%.*}
  rest=${1#*.}
  minor=${rest%%.*}
  case $major in
  22) [ "$minor" -ge 22 ] ;;
  24) true ;;
  *) [ "$major" -ge 26 ] ;;
  esac
}

# The version of the `node` a user's shell finds: PATH without this checkout's node_modules/.bin, where the link is.
users_node() {
  path=$(printf '%s\n' "$PATH" | tr ':' '\n' | grep -vxF "$root/node_modules/.bin" | paste -sd: -)
  PATH=$path node -p process.versions.node 2>/dev/null || echo 0.0.0
}

# Installs Node $1 from the npm registry's `node` package into .toolchain/node-$1 (once); prints its binary's path.
install_node() {
  dir="$root/.toolchain/node-$1"
  binary="$dir/node_modules/node/bin/node"
  if [ "$("$binary" -p process.versions.node 2>/dev/null || true)" != "$1" ]; then
    say "installing Node $1 from the npm registry's node package into .toolchain/node-$1"
    rm -rf "$dir"
    if ! npm install --prefix "$dir" --no-save --no-package-lock --no-audit --no-fund --loglevel=error "node@$1" >&2 ||
      [ "$("$binary" -p process.versions.node 2>/dev/null || true)" != "$1" ]; then
      say "could not install Node $1 from the npm registry (see npm's message above); install Node 22.22+, 24 or 26+ yourself and run npm install again"
      exit 1
    fi
  fi
  printf '%s\n' "$binary"
}

case ${1:-} in
link)
  current=$(users_node)
  if supported "$current"; then
    if [ -L "$link" ]; then
      rm -f "$link"
      say "Node $current serves this checkout: removed the link to the pinned Node"
    fi
    exit 0
  fi
  install_node "$PINNED_NODE" >/dev/null
  mkdir -p "$(dirname "$link")"
  ln -sfn "../../.toolchain/node-$PINNED_NODE/node_modules/node/bin/node" "$link"
  say "Node $current is older than this checkout supports (22.22+, 24 or 26+): npm scripts and npx run Node $PINNED_NODE (.toolchain/node-$PINNED_NODE, linked as node_modules/.bin/node)"
  ;;
bin)
  [ -n "${2:-}" ] || {
    say "usage: sh scripts/node-toolchain.sh bin VERSION"
    exit 2
  }
  dirname "$(install_node "$2")"
  ;;
pinned)
  printf '%s\n' "$PINNED_NODE"
  ;;
*)
  say "usage: sh scripts/node-toolchain.sh link | bin VERSION | pinned"
  exit 2
  ;;
esac
