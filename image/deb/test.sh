#!/usr/bin/env bash
# image/deb/test.sh OLD.deb NEW.deb: the package as a facility's Debian 12
# VM meets it, in a fresh root made by mmdebstrap (Debian's mirror as apt
# is configured here, nothing else):
#   install OLD; nmos-certs version; config check of the shipped conffile;
#   the service account, the data directory and the unit enabled;
#   ca init as the service account; the operator edits the conffile;
#   upgrade to NEW: same CA, edited conffile kept, database opened;
#   remove, then purge: the CA and the database stay; reinstall: same CA;
# then lintian on NEW: no error, and only the warnings image/README.md
# lists (with why). Run by `make deb-test`.
set -euo pipefail
cd "$(dirname "$0")/../.."

old=$(realpath "$1")
new=$(realpath "$2")
start=$SECONDS
step() { printf '== %s (%ds)\n' "$*" $((SECONDS - start)); }
fail() { printf 'deb-test: FAILED: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "mmdebstrap's root mode and chroot need root (run: sudo make deb-test)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root="$work/root"

step "lintian $(basename "$new")"
lintian --fail-on error --info "$new" > "$work/lintian.txt" 2>&1 || { cat "$work/lintian.txt"; fail "lintian reports errors"; }
# Every warning must be one image/README.md lists under "Lintian".
while read -r tag; do
	grep -q "^- \`$tag\`" image/README.md || { cat "$work/lintian.txt"; fail "lintian warning $tag is not listed and justified in image/README.md"; }
done < <(awk '$1 == "W:" { print $3 }' "$work/lintian.txt" | sort -u)

step "mmdebstrap bookworm (minbase, systemd)"
mmdebstrap --quiet --variant=minbase --include=systemd,init-system-helpers bookworm "$root" > "$work/mmdebstrap.log" 2>&1 ||
	{ tail -20 "$work/mmdebstrap.log"; fail "mmdebstrap"; }
cp "$old" "$root/tmp/old.deb"
cp "$new" "$root/tmp/new.deb"
mount -t proc proc "$root/proc"
trap 'umount "$root/proc" 2>/dev/null || true; rm -rf "$work"' EXIT

in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"; }
as_service() { in_root runuser -u nmos-certs -- "$@"; }
apt_install() {
	in_root apt-get install -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@" > "$work/apt.log" 2>&1 ||
		{ cat "$work/apt.log"; fail "apt-get install $*"; }
}
cfg=/etc/nmos-certs/nmos-certs.yaml
fingerprints() { as_service nmos-certs ca status --config "$cfg" | awk 'NR > 1 { print $1, $8 }'; }

step "install the older package"
apt_install /tmp/old.deb
grep -q "systemctl start nmos-certs" "$work/apt.log" || fail "the first install does not say how to start the appliance"
in_root nmos-certs version | grep -q -- "-old" || fail "the older package's binary is not installed"
in_root nmos-certs config check "$cfg" | grep -q ": ok" || fail "config check on the shipped conffile"
in_root getent passwd nmos-certs | grep -q ':/var/lib/nmos-certs:/usr/sbin/nologin$' || fail "the service account"
[ "$(in_root stat -c '%a %U %G' /var/lib/nmos-certs)" = "700 nmos-certs nmos-certs" ] || fail "/var/lib/nmos-certs is $(in_root stat -c '%a %U %G' /var/lib/nmos-certs)"
[ -L "$root/etc/systemd/system/multi-user.target.wants/nmos-certs.service" ] || fail "the unit is not enabled"
for f in /usr/share/man/man1/nmos-certs.1.gz /usr/share/bash-completion/completions/nmos-certs \
	/usr/share/nmos-certs/prometheus/nmos-certs.rules.yml /usr/share/nmos-certs/grafana/nmos-certs.json \
	/usr/share/doc/nmos-certs/copyright /usr/share/doc/nmos-certs/docs/operations.md; do
	[ -s "$root$f" ] || fail "$f is missing"
done
grep -q "^ExecStart=/usr/bin/nmos-certs serve --config $cfg" "$root/lib/systemd/system/nmos-certs.service" || fail "the unit's ExecStart"

step "ca init as the service account"
as_service nmos-certs ca init --config "$cfg" > /dev/null 2>&1
before=$(fingerprints)
[ "$(echo "$before" | wc -l)" -eq 4 ] || fail "ca status after ca init: $before"
[ "$(in_root stat -c '%a %U' /var/lib/nmos-certs/ca/ecdsa-root-1.key)" = "600 nmos-certs" ] || fail "a CA key is not 0600 and the service account's"
# The operator edits the configuration.
sed -i 's/^  leaf_lifetime: 2160h/  leaf_lifetime: 1440h  # edited/' "$root$cfg"
grep -q "# edited" "$root$cfg" || fail "could not edit the conffile"

step "upgrade to $(basename "$new")"
apt_install /tmp/new.deb
in_root nmos-certs version | grep -qv -- "-old" || fail "the upgrade did not replace the binary"
grep -q "# edited" "$root$cfg" || fail "the upgrade replaced the edited configuration"
in_root nmos-certs config check "$cfg" | grep -q ": ok" || fail "config check after the upgrade"
[ "$(fingerprints)" = "$before" ] || fail "the CA changed in the upgrade: $(fingerprints)"
[ -L "$root/etc/systemd/system/multi-user.target.wants/nmos-certs.service" ] || fail "the upgrade disabled the unit"

step "remove, purge, reinstall"
in_root dpkg --remove nmos-certs > /dev/null
[ ! -e "$root/usr/bin/nmos-certs" ] || fail "remove left the binary"
[ -f "$root/var/lib/nmos-certs/ca/ecdsa-root-1.key" ] || fail "remove deleted the CA"
grep -q "# edited" "$root$cfg" || fail "remove deleted the configuration"
in_root dpkg --purge nmos-certs > "$work/purge.log" 2>&1
grep -q "was kept" "$work/purge.log" || { cat "$work/purge.log"; fail "purge does not say the data directory was kept"; }
[ ! -e "$root$cfg" ] || fail "purge left the conffile"
[ -f "$root/var/lib/nmos-certs/nmos-certs.db" ] || fail "purge deleted the database"
apt_install /tmp/new.deb
[ "$(fingerprints)" = "$before" ] || fail "the reinstalled package does not find the CA: $(fingerprints)"

step "ok"
