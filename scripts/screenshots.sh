#!/usr/bin/env bash
# Screenshots of the HTML page (all passing, a slow check, failing with history) at phone
# (390 px) and desktop (1280 px) widths, for docs/img/. Needs headless Chromium
# (`apt-get install -y chromium`; `pngquant` makes them smaller when present).
set -euo pipefail
cd "$(dirname "$0")/.."
pages=$(mktemp -d)
cargo run -q -p smoketest-core --example html_pages -- "$pages"
mkdir -p docs/img
for page in pass warn-slow fail-history; do
  for width in 390 1280; do
    height=$([ "$width" = 390 ] && echo 900 || echo 720)
    profile=$(mktemp -d)
    chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
      --disable-component-update --disable-sync --no-first-run --hide-scrollbars \
      --user-data-dir="$profile" --screenshot="docs/img/html-$page-$width.png" \
      --window-size="$width,$height" "file://$pages/$page.html" 2>/dev/null
    rm -rf "$profile"
  done
done
# Palette PNGs: a few tens of KB each instead of ~70 (skipped when pngquant is missing).
if command -v pngquant >/dev/null; then
  pngquant --force --skip-if-larger --ext .png --quality 70-95 docs/img/html-*.png || true
fi
ls -l docs/img
