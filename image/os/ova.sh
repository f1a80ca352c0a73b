#!/usr/bin/env bash
# ova.sh DISK.vmdk CAPACITY VERSION OUT.ova: the OVA for vSphere: a tar
# (ustar) of the OVF descriptor, its manifest (SHA256 of each file) and the
# streamOptimized VMDK, in that order, as the OVF specification asks.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
vmdk=${1:?usage: ova.sh DISK.vmdk CAPACITY VERSION OUT.ova}
capacity=${2:?} version=${3:?} ova=$(readlink -f "${4:?}")
# Inside the OVA, names of letters, digits, dots, dashes and underscores
# only (a Debian version may hold a tilde).
base=$(basename "$ova" .ova | tr -c 'A-Za-z0-9._\n-' '-')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

ln "$vmdk" "$work/$base-disk1.vmdk" 2>/dev/null || cp "$vmdk" "$work/$base-disk1.vmdk"
# Bytes of the disk that hold data: qemu-img's map of the VMDK.
populated=$(qemu-img map --output=json "$vmdk" |
	awk -F'[,:]' '/"data": true/ { for (i = 1; i < NF; i++) if ($i ~ /"length"/) s += $(i + 1) } END { printf "%d", s }')
sed -e "s|@VMDK@|$base-disk1.vmdk|" \
	-e "s|@VMDK_SIZE@|$(stat -c %s "$vmdk")|" \
	-e "s|@CAPACITY@|$capacity|" \
	-e "s|@POPULATED@|$populated|" \
	-e "s|@NAME@|$base|g" \
	-e "s|@VERSION@|$version|g" \
	"$here/nmos-certs.ovf.in" >"$work/$base.ovf"
if grep -n '@[A-Z_]*@' "$work/$base.ovf"; then
	echo "ova.sh: a placeholder was left in the descriptor" >&2
	exit 1
fi
(
	cd "$work"
	for f in "$base.ovf" "$base-disk1.vmdk"; do
		printf 'SHA256(%s)= %s\n' "$f" "$(sha256sum "$f" | cut -d' ' -f1)"
	done >"$base.mf"
	tar --format=ustar --owner=0 --group=0 --numeric-owner --mode=0644 \
		-cf "$ova" "$base.ovf" "$base.mf" "$base-disk1.vmdk"
)
