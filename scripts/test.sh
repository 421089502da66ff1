#!/usr/bin/env bash
# Install everything the tests need on a fresh Debian machine, then lint, type-check and
# run the whole suite (unit, integration on real Ray/Serve/Postgres/bubblewrap/Chromium).
# With CI=true a test that needs Ray, Postgres, the sandbox or a browser never skips:
# tests/conftest.py turns such a skip into a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v bwrap >/dev/null 2>&1 || need_apt+=(bubblewrap)
# Sandbox egress (user-mode networking) and the break-out suite's veth "outside" host.
command -v slirp4netns >/dev/null 2>&1 || need_apt+=(slirp4netns)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing system packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

python3 -m pip install -q -e '.[test]'

# A dead `ray start` cluster makes a later plain ray.init() hang; tests start their own.
rm -f /tmp/ray/ray_current_cluster
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0

python3 -m ruff check ash_ray tests benchmarks examples
python3 -m mypy
set +e
python3 -m pytest -q -p no:cacheprovider "$@"
rc=$?
set -e
# pytest's 5 = "no tests collected": that is a failure for us.
[ $rc -eq 5 ] && { echo "no tests were collected"; exit 1; }
exit $rc
