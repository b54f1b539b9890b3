#!/usr/bin/env bash
# Installs the Debian packages oci-build's tests (and builds) use, when missing.
# As root it installs them; otherwise it prints the exact apt-get line and exits 3.
set -euo pipefail

PACKAGES=(
  buildah skopeo uidmap bubblewrap nats-server docker-registry golang-go busybox-static git maven openjdk-17-jdk-headless
  mmdebstrap docker-compose prometheus chromium
  libmaven-compiler-plugin-java libmaven-jar-plugin-java libmaven-resources-plugin-java libsurefire-java
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$pkg")
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

sorted=("${missing[@]}")
line="apt-get install -y --no-install-recommends ${sorted[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "oci-build needs these Debian packages: ${sorted[*]}" >&2
  echo "Install them as root, then run again:" >&2
  echo "  sudo apt-get update && sudo $line" >&2
  exit 3
fi

echo "==> installing Debian packages: ${sorted[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends ${sorted[*]} >/dev/null
