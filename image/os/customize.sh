#!/usr/bin/env bash
# customize.sh ROOT PACKAGE.deb: installs the nmos-certs package and turns
# the root file system mmdebstrap installed into the appliance's. Runs on
# the build host (as mmdebstrap's customize hook), in ROOT through chroot
# where a command must run inside; nothing is started.
# The identifiers of the disk come from the environment (build.sh):
# ROOT_UUID (ext4 UUID of /), ESP_UUID (FAT volume id of the ESP, XXXX-XXXX).
set -euo pipefail
trap 'echo "customize.sh: failed at line $LINENO: $BASH_COMMAND" >&2' ERR

root=${1:?usage: customize.sh ROOT PACKAGE.deb}
deb=${2:?usage: customize.sh ROOT PACKAGE.deb}
: "${ROOT_UUID:?}" "${ESP_UUID:?}"
here=$(cd "$(dirname "$0")" && pwd)
umask 022

in_root() {
	chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 \
		SYSTEMD_RELAX_ESP_CHECKS=1 "$@"
}

# The package. Its postinst enables the service; nothing starts in a chroot.
install -m 0644 "$deb" "$root/tmp/nmos-certs.deb"
in_root apt-get install -y --no-install-recommends /tmp/nmos-certs.deb
rm -f "$root/tmp/nmos-certs.deb"

# The image's own files: units, first-boot scripts, network, apt and SSH
# settings.
cp -r --no-preserve=mode,ownership "$here/rootfs/." "$root/"
chmod 0755 "$root"/usr/lib/nmos-certs-image/*
install -D -m 0644 "$here/README.md" "$root/usr/share/doc/nmos-certs-image/README.md"
mkdir -p "$root/etc/issue.d"
ln -sf /run/nmos-certs-image/banner.issue "$root/etc/issue.d/nmos-certs.issue"

cmdline="root=UUID=$ROOT_UUID ro console=tty0 console=ttyS0,115200n8"

cat >"$root/etc/fstab" <<EOF
# <file system>  <mount point>  <type>  <options>  <dump>  <pass>
# x-systemd.growfs: / grows into its partition, which systemd-repart grows
# over the rest of the disk (/usr/lib/repart.d/50-root.conf).
UUID=$ROOT_UUID  /          ext4  errors=remount-ro,x-systemd.growfs  0  1
UUID=$ESP_UUID   /boot/efi  vfat  umask=0077,nofail                   0  2
EOF

echo nmos-certs >"$root/etc/hostname"
cat >"$root/etc/hosts" <<'EOF'
127.0.0.1	localhost
127.0.1.1	nmos-certs
::1		localhost ip6-localhost ip6-loopback
ff02::1		ip6-allnodes
ff02::2		ip6-allrouters
EOF
echo 'LANG=C.UTF-8' >"$root/etc/default/locale"
ln -sf default/locale "$root/etc/locale.conf"
ln -sf /usr/share/zoneinfo/Etc/UTC "$root/etc/localtime"
echo 'Etc/UTC' >"$root/etc/timezone"

# First boot is a systemd first boot (presets applied, machine id made).
printf 'uninitialized\n' >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id" "$root/var/lib/systemd/random-seed"
ln -sf /etc/machine-id "$root/var/lib/dbus/machine-id"

# Name resolution through resolved's list of servers, without its stub on
# port 53 (the appliance's DNS).
ln -sf /run/systemd/resolve/resolv.conf "$root/etc/resolv.conf"

# SSH: off until a key is given; every machine makes its own host keys.
rm -f "$root"/etc/ssh/ssh_host_*
in_root systemctl disable ssh.service ssh.socket >/dev/null 2>&1 || true

in_root systemctl enable systemd-networkd.service systemd-networkd-wait-online.service \
	systemd-resolved.service systemd-timesyncd.service systemd-boot-update.service \
	nmos-certs-provision.service nmos-certs-setup.service nmos-certs-banner.service \
	nmos-certs.service
# The first-boot wizard here is nmos-certs-setup; systemd-firstboot would
# ask for a locale and a root password on the console first.
in_root systemctl mask systemd-firstboot.service

# The fw_cfg driver must be loaded before systemd starts, for it to read
# credentials qemu passes with -fw_cfg (SMBIOS strings need no driver).
grep -qx qemu_fw_cfg "$root/etc/initramfs-tools/modules" || echo qemu_fw_cfg >>"$root/etc/initramfs-tools/modules"
in_root update-initramfs -u -k all

# UEFI: systemd-boot and the kernel on the ESP, which is /boot/efi in the
# running system and a directory here (build.sh copies it into the FAT
# image). Kernel updates reach it through Debian's kernel-install hooks.
kver=$(basename "$(readlink -f "$root/vmlinuz")")
kver=${kver#vmlinuz-}
# bootctl wants the ESP to be a file system of its own: a tmpfs stands in
# (SYSTEMD_RELAX_ESP_CHECKS lets it be other than FAT).
mkdir -p "$root/boot/efi" "$root/etc/kernel" "$root/boot/efi.staging"
echo "$cmdline" >"$root/etc/kernel/cmdline"
mount -t tmpfs -o mode=0755 esp "$root/boot/efi"
trap 'umount "$root/boot/efi" 2>/dev/null || true' EXIT
in_root bootctl install --esp-path=/boot/efi --no-variables --entry-token=literal:nmos-certs
in_root kernel-install add "$kver" "/boot/vmlinuz-$kver" "/boot/initrd.img-$kver"
cat >"$root/boot/efi/loader/loader.conf" <<'EOF'
timeout 3
console-mode keep
editor no
EOF
ls "$root"/boot/efi/loader/entries/*.conf >/dev/null
# A random seed made here would be every machine's: systemd-boot makes its own.
rm -f "$root/boot/efi/loader/random-seed"
cp -a "$root/boot/efi/." "$root/boot/efi.staging/"
umount "$root/boot/efi"
trap - EXIT
rmdir "$root/boot/efi"
mv "$root/boot/efi.staging" "$root/boot/efi"

# Legacy BIOS: GRUB (core.img in the BIOS boot partition, written by
# build.sh) reads this from the root file system. /vmlinuz and /initrd.img
# are Debian's links to the newest kernel, so kernel updates need no
# change here.
mkdir -p "$root/boot/grub/i386-pc"
cp /usr/lib/grub/i386-pc/*.mod /usr/lib/grub/i386-pc/*.lst "$root/boot/grub/i386-pc/"
cat >"$root/boot/grub/grub.cfg" <<EOF
# GRUB for legacy BIOS boot of the nmos-certs image (UEFI uses systemd-boot).
set timeout=3
serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial
search --no-floppy --fs-uuid --set=root $ROOT_UUID
menuentry 'nmos-certs (Debian 12)' {
	linux /vmlinuz $cmdline
	initrd /initrd.img
}
if [ -f /vmlinuz.old ]; then
	menuentry 'nmos-certs (Debian 12, previous kernel)' {
		linux /vmlinuz.old $cmdline
		initrd /initrd.img.old
	}
fi
EOF

# What the image need not carry.
in_root apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/debconf/*-old \
	"$root"/var/lib/dpkg/*-old "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/tmp/* \
	"$root"/root/.bash_history
