#!/usr/bin/env bash
# build.sh PACKAGE.deb: the nmos-certs OS image, Debian 12 with the package
# installed, as a raw GPT disk that boots by UEFI (systemd-boot) and by
# legacy BIOS (GRUB), and the same disk as qcow2, streamOptimized VMDK and
# OVA, with SHA256SUMS, in dist/image/ (OUT). Run as root on Debian 12;
# `make image` does (see image/os/README.md).
#
# No loop device and no mount: the root file system is a directory that
# mkfs.ext4 -d turns into a partition image, the ESP a FAT image filled
# with mtools, and sfdisk and dd put them on the disk.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
deb=$(readlink -f "${1:?usage: build.sh PACKAGE.deb}")
out=${OUT:-$top/dist/image}
suite=${SUITE:-bookworm}
mirror=${MIRROR:-http://deb.debian.org/debian}
security_mirror=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
disk_mib=${DISK_MIB:-2048}

[ "$(id -u)" -eq 0 ] || { echo "build.sh: run as root (mmdebstrap, chroot, file ownership)" >&2; exit 1; }
[ -f "$deb" ] || { echo "build.sh: $deb: no such package" >&2; exit 1; }

version=$(dpkg-deb -f "$deb" Version)
name=nmos-certs-$version
work=$(mktemp -d "${TMPDIR:-/var/tmp}/nmos-certs-image.XXXXXX")
cleanup() { rm -rf "$work"; }
trap cleanup EXIT

# stage NAME COMMAND...: runs one step, printing its name and its time.
build_start=$SECONDS
stage() {
	local label=$1 t=$SECONDS
	shift
	printf '== %s\n' "$label"
	"$@"
	printf '== %s: %ds\n' "$label" $((SECONDS - t))
}

# The disk. Sectors of 512 bytes; partitions aligned to 1 MiB.
#   1  BIOS boot  1 MiB     GRUB's core.img
#   2  ESP        256 MiB   FAT32: systemd-boot, kernels, initrds
#   3  root       the rest  ext4, grows to the end of a larger disk at boot
bios_start=2048 bios_size=2048
esp_start=4096 esp_size=$((256 * 2048))
root_start=$((esp_start + esp_size))
disk_sectors=$((disk_mib * 2048))
root_size=$((disk_sectors - root_start - 2048))
export ROOT_UUID ESP_UUID
ROOT_UUID=$(uuidgen)
esp_id=$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')
ESP_UUID=$(printf '%s-%s' "${esp_id:0:4}" "${esp_id:4:4}" | tr a-f A-F)
root=$work/root

rootfs() {
	local packages=(
		systemd systemd-sysv udev dbus kmod
		linux-image-amd64 initramfs-tools zstd systemd-boot
		systemd-timesyncd systemd-resolved
		openssh-server unattended-upgrades ca-certificates
		e2fsprogs dosfstools iproute2 iputils-ping procps less vim-tiny
	)
	local excludes=(
		'/usr/share/doc/*' '/usr/share/man/*' '/usr/share/info/*' '/usr/share/locale/*'
		'/usr/share/lintian/*'
		# Kernel modules a certificate appliance on a server or a VM does not
		# use: sound, video capture, wireless, Bluetooth, the large GPU
		# drivers (the console runs on the firmware's frame buffer or VGA
		# text), InfiniBand, industrial I/O, staging. (The kernel package
		# installs them under /lib/modules, as dpkg sees the path.)
		'/lib/modules/*/kernel/sound/*' '/lib/modules/*/kernel/drivers/media/*'
		'/lib/modules/*/kernel/drivers/net/wireless/*' '/lib/modules/*/kernel/net/wireless/*'
		'/lib/modules/*/kernel/net/mac80211/*' '/lib/modules/*/kernel/drivers/bluetooth/*'
		'/lib/modules/*/kernel/net/bluetooth/*' '/lib/modules/*/kernel/drivers/gpu/drm/amd/*'
		'/lib/modules/*/kernel/drivers/gpu/drm/nouveau/*' '/lib/modules/*/kernel/drivers/gpu/drm/i915/*'
		'/lib/modules/*/kernel/drivers/gpu/drm/radeon/*' '/lib/modules/*/kernel/drivers/infiniband/*'
		'/lib/modules/*/kernel/drivers/iio/*' '/lib/modules/*/kernel/drivers/staging/*'
		'/lib/modules/*/kernel/drivers/comedi/*' '/lib/modules/*/kernel/drivers/isdn/*'
		'/lib/modules/*/kernel/drivers/nfc/*' '/lib/modules/*/kernel/net/nfc/*'
		'/lib/modules/*/kernel/drivers/net/can/*' '/lib/modules/*/kernel/net/can/*'
		'/lib/modules/*/kernel/drivers/mtd/*' '/lib/modules/*/kernel/drivers/input/touchscreen/*'
		'/lib/modules/*/kernel/drivers/input/joystick/*'
		# File systems the appliance never mounts (ext4, FAT, ISO 9660, NFS and
		# CIFS stay).
		'/lib/modules/*/kernel/fs/btrfs/*' '/lib/modules/*/kernel/fs/xfs/*' '/lib/modules/*/kernel/fs/ocfs2/*'
		'/lib/modules/*/kernel/fs/gfs2/*' '/lib/modules/*/kernel/fs/f2fs/*' '/lib/modules/*/kernel/fs/jfs/*'
		'/lib/modules/*/kernel/fs/reiserfs/*' '/lib/modules/*/kernel/fs/nilfs2/*' '/lib/modules/*/kernel/fs/ubifs/*'
		'/lib/modules/*/kernel/fs/orangefs/*'
	)
	local includes=('/usr/share/doc/*/copyright' '/usr/share/doc/nmos-certs/*' /usr/share/locale/locale.alias)
	local opts=() p
	for p in "${excludes[@]}"; do
		case $p in '#'*) continue ;; esac
		opts+=("--dpkgopt=path-exclude=$p")
	done
	for p in "${includes[@]}"; do opts+=("--dpkgopt=path-include=$p"); done
	local list
	list=$(IFS=,; echo "${packages[*]}")
	mmdebstrap --variant=minbase --mode=root --format=directory \
		--aptopt='Acquire::Languages "none"' "${opts[@]}" \
		--include="$list" \
		--customize-hook="\"$here/customize.sh\" \"\$1\" \"$deb\"" \
		"$suite" "$root" \
		"deb $mirror $suite main" "deb $mirror $suite-updates main" \
		"deb $security_mirror $suite-security main"
	du -sh --apparent-size "$root" | sed 's/^/   root file system: /'
}

esp() {
	local kib=$((esp_size / 2))
	mkfs.vfat -C -F 32 -n ESP -i "${ESP_UUID//-/}" "$work/esp.img" "$kib" >/dev/null
	(cd "$root/boot/efi" && mcopy -s -Q -m -i "$work/esp.img" ./* ::/)
	mdir -/ -b -i "$work/esp.img" ::/ | sed 's/^/   esp: /'
	# /boot/efi is the ESP's mount point in the running system.
	find "$root/boot/efi" -mindepth 1 -delete
}

rootimg() {
	local size_bytes=$((root_size * 512))
	truncate -s "$size_bytes" "$work/root.img"
	mkfs.ext4 -q -L nmos-certs-root -U "$ROOT_UUID" -d "$root" \
		-E lazy_itable_init=1,lazy_journal_init=1,root_owner=0:0 \
		"$work/root.img"
	e2fsck -fn "$work/root.img" >/dev/null 2>&1 || { e2fsck -fn "$work/root.img"; return 1; }
}

disk() {
	local raw=$work/$name.raw
	truncate -s "$((disk_sectors * 512))" "$raw"
	sfdisk --quiet --no-reread --no-tell-kernel "$raw" <<EOF
label: gpt
unit: sectors
first-lba: 2048
start=$bios_start, size=$bios_size, type=21686148-6449-6E6F-744E-656564454649, name="bios"
start=$esp_start, size=$esp_size, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="esp"
start=$root_start, size=$root_size, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name="root"
EOF
	dd if="$work/esp.img" of="$raw" bs=1M seek=$((esp_start / 2048)) conv=notrunc,sparse status=none
	dd if="$work/root.img" of="$raw" bs=1M seek=$((root_start / 2048)) conv=notrunc,sparse status=none
	rm -f "$work/esp.img" "$work/root.img"
	"$here/grub-bios.sh" "$raw" "$bios_start" "$bios_size" "$ROOT_UUID"
	sfdisk --list "$raw" | sed 's/^/   /'
}

formats() {
	local raw=$work/$name.raw
	mkdir -p "$out"
	# One image in OUT: an earlier version's files go.
	rm -f "$out"/nmos-certs-*.raw "$out"/nmos-certs-*.qcow2 "$out"/nmos-certs-*.vmdk "$out"/nmos-certs-*.ova "$out/SHA256SUMS"
	qemu-img convert -c -f raw -O qcow2 "$raw" "$work/$name.qcow2"
	qemu-img convert -f raw -O vmdk -o subformat=streamOptimized,adapter_type=lsilogic "$raw" "$work/$name.vmdk"
	"$here/ova.sh" "$work/$name.vmdk" "$((disk_sectors * 512))" "$version" "$work/$name.ova"
	local f
	for f in raw qcow2 vmdk ova; do
		# mv keeps the raw disk sparse.
		mv "$work/$name.$f" "$out/"
	done
	(cd "$out" && sha256sum "$name.raw" "$name.qcow2" "$name.vmdk" "$name.ova" >SHA256SUMS)
}

printf 'nmos-certs image %s from %s\n' "$version" "${deb##*/}"
stage "root file system (mmdebstrap, packages, first-boot units, boot loaders' files)" rootfs
stage "ESP (FAT32, mtools)" esp
stage "root partition (mkfs.ext4 -d)" rootimg
stage "GPT disk, GRUB for BIOS" disk
stage "qcow2, VMDK, OVA, SHA256SUMS" formats
if [ -n "${SUDO_UID:-}" ]; then chown -R "$SUDO_UID:${SUDO_GID:-$SUDO_UID}" "$out"; fi

raw=$out/$name.raw
printf '== done in %ds\n' $((SECONDS - build_start))
printf '   %-40s %6s MiB apparent, %6s MiB on disk\n' "${raw#"$top"/}" \
	"$(($(stat -c %s "$raw") / 1048576))" "$(($(du -B1 "$raw" | cut -f1) / 1048576))"
for f in qcow2 vmdk ova; do
	printf '   %-40s %6s MiB\n' "${out#"$top"/}/$name.$f" "$(($(stat -c %s "$out/$name.$f") / 1048576))"
done
