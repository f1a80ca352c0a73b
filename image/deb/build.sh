#!/usr/bin/env bash
# Builds dist/nmos-certs_<version>_<arch>.deb for each architecture given
# (amd64 arm64 by default) with nfpm. Called by `make deb`; NFPM names the
# nfpm binary, VERSION the program's version, DEB_VERSION the package's.
set -euo pipefail
cd "$(dirname "$0")/../.."

: "${NFPM:?NFPM names the nfpm binary}"
: "${VERSION:?}" "${DEB_VERSION:?}" "${LDFLAGS:?}"
archs=("$@")
[ ${#archs[@]} -gt 0 ] || archs=(amd64 arm64)

mkdir -p dist
for arch in "${archs[@]}"; do
	b="dist/build/$arch"
	rm -rf "$b"
	mkdir -p "$b"
	CGO_ENABLED=0 GOOS=linux GOARCH="$arch" go build -trimpath -ldflags "$LDFLAGS" -o "$b/nmos-certs" .
	# What the package says about itself comes from a binary that runs
	# here; it is the same program, so the same text.
	host="dist/build/host-nmos-certs"
	[ -x "$host" ] || CGO_ENABLED=0 go build -trimpath -ldflags "$LDFLAGS" -o "$host" .
	"$host" config example | sed 's|^data_dir: .*|data_dir: /var/lib/nmos-certs   # the package'"'"'s data directory, mode 0700, owned by nmos-certs|' > "$b/nmos-certs.yaml"
	grep -q '^data_dir: /var/lib/nmos-certs' "$b/nmos-certs.yaml"
	"$host" man | gzip -9n > "$b/nmos-certs.1.gz"
	"$host" completion bash > "$b/bash-completion"
	"$host" completion zsh > "$b/zsh-completion"
	{
		cat image/deb/copyright.head
		echo
		echo "Comment: Go modules built into /usr/bin/nmos-certs (from its build information):"
		go version -m "$b/nmos-certs" | awk '$1 == "dep" { printf " %s %s\n", $2, $3 }'
	} > "$b/copyright"
	{
		echo "nmos-certs ($DEB_VERSION) unstable; urgency=medium"
		echo
		echo "  * Built from $VERSION."
		echo
		echo " -- nmos-certs maintainers <nmos-certs@example.org>  $(git log -1 --format=%cD 2>/dev/null || date -R)"
	} | gzip -9n > "$b/changelog.gz"
	DEB_ARCH="$arch" BUILD_DIR="$b" "$NFPM" package --config image/deb/nfpm.yaml --packager deb --target "dist/nmos-certs_${DEB_VERSION}_${arch}.deb" >/dev/null
	echo "dist/nmos-certs_${DEB_VERSION}_${arch}.deb"
done
