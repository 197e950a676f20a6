#!/usr/bin/env bash
# Make sure headless Chromium is on PATH (Debian's at /usr/bin/chromium) for the HTML report and console browser tests.
# If it is missing, install Debian's `chromium` package (as root, quietly). When that is not
# possible, say so: locally exit 0 and the test skips; under CI=true exit 1, so a CI run
# never passes with the test skipped.
set -uo pipefail
found() { command -v chromium || command -v chromium-browser || command -v google-chrome; } 2>/dev/null
give_up() {
  if [ "${CI:-}" = true ]; then
    echo "chromium: $1; CI=true, so this is an error (the HTML report test must run in CI)" >&2
    exit 1
  fi
  echo "chromium: $1; the HTML report test will skip"
  exit 0
}
if browser=$(found); then echo "chromium: $("$browser" --version 2>/dev/null || echo "$browser")"; exit 0; fi
if [ "$(id -u 2>/dev/null)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "chromium: installing Debian's chromium"
  if (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium) \
      >/dev/null 2>&1 && found >/dev/null; then
    echo "chromium: installed"
    exit 0
  fi
  give_up "the install of Debian's chromium failed"
fi
give_up "not installed, and cannot be installed here (needs root and apt-get)"
