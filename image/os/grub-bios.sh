#!/usr/bin/env bash
# grub-bios.sh DISK START SECTORS ROOT_UUID: makes DISK boot by legacy BIOS,
# as grub-install does for a GPT disk but on an image file: GRUB's core.img
# goes into the BIOS boot partition (START, SECTORS), boot.img into the MBR,
# pointing at it. core.img finds the root file system by its UUID and reads
# /boot/grub/grub.cfg there (modules in /boot/grub/i386-pc).
set -euo pipefail

disk=${1:?usage: grub-bios.sh DISK START SECTORS ROOT_UUID}
start=${2:?} sectors=${3:?} root_uuid=${4:?}
grub=/usr/lib/grub/i386-pc
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The offsets below are those of GRUB 2's i386-pc boot.img and diskboot.img
# (include/grub/i386/pc/boot.h); they are checked against the files first.
kernel_sector=0x5c  # boot.img: 64-bit LBA of core.img's first sector
boot_drive=0x64     # boot.img: 0xff, use the drive the BIOS booted from
drive_check=0x66    # boot.img: a jump over the boot drive check
bpb_start=0x03      # boot.img: room for a BIOS parameter block, up to 0x5a
nt_magic=0x1b8      # MBR: disk signature, partition table, up to 0x1fe
blocklist=0x1f4     # diskboot.img: first blocklist entry (start, len, segment)

byte_at() { od -An -tx1 -j "$(($2))" -N 1 "$1" | tr -d ' \n'; }
u64_at() { od -An -tu8 -j "$(($2))" -N 8 "$1" | tr -d ' \n'; }
u16_at() { od -An -tu2 -j "$(($2))" -N 2 "$1" | tr -d ' \n'; }
# put_le FILE OFFSET BYTES VALUE: write VALUE little-endian over BYTES bytes.
put_le() {
	local file=$1 off=$(($2)) n=$3 v=$4 i s=
	for ((i = 0; i < n; i++)); do s+=$(printf '\\x%02x' $(((v >> (8 * i)) & 255))); done
	printf '%b' "$s" | dd of="$file" bs=1 seek="$off" conv=notrunc status=none
}
fail() { echo "grub-bios.sh: $*" >&2; exit 1; }

if [ "$(u64_at "$grub/boot.img" $kernel_sector)" != 1 ] ||
	[ "$(byte_at "$grub/boot.img" $boot_drive)" != ff ] ||
	[ "$(byte_at "$grub/boot.img" $drive_check)" != eb ]; then
	fail "$grub/boot.img is not laid out as expected"
fi
if [ "$(u64_at "$grub/diskboot.img" $blocklist)" != 2 ]; then
	fail "$grub/diskboot.img is not laid out as expected"
fi

cat >"$work/early.cfg" <<EOF
search --no-floppy --fs-uuid --set=root $root_uuid
set prefix=(\$root)/boot/grub
EOF
grub-mkimage -O i386-pc -d "$grub" -o "$work/core.img" -c "$work/early.cfg" -p /boot/grub \
	biosdisk part_gpt ext2 search search_fs_uuid normal configfile linux echo test \
	serial terminal sleep
core_sectors=$((($(stat -c %s "$work/core.img") + 511) / 512))
[ "$core_sectors" -le "$sectors" ] || fail "core.img ($core_sectors sectors) does not fit in $sectors sectors"
# grub-mkimage wrote the length of the rest of core.img (after its first
# sector, diskboot.img) into the blocklist; where it lies is ours to say.
[ "$(u16_at "$work/core.img" $((blocklist + 8)))" = $((core_sectors - 1)) ] ||
	fail "core.img's blocklist length is not $((core_sectors - 1))"
put_le "$work/core.img" $blocklist 8 $((start + 1))
dd if="$work/core.img" of="$disk" bs=512 seek="$start" conv=notrunc status=none

# boot.img in the MBR, keeping what sfdisk wrote there (protective MBR
# partition table and signature) and pointing at core.img.
dd if="$disk" of="$work/mbr" bs=512 count=1 status=none
cp "$grub/boot.img" "$work/boot.img"
dd if="$work/mbr" of="$work/boot.img" bs=1 skip=$((bpb_start)) seek=$((bpb_start)) \
	count=$((0x5a - bpb_start)) conv=notrunc status=none
dd if="$work/mbr" of="$work/boot.img" bs=1 skip=$((nt_magic)) seek=$((nt_magic)) \
	count=$((0x200 - nt_magic)) conv=notrunc status=none
put_le "$work/boot.img" $kernel_sector 8 "$start"
# A hard disk: no check of the drive number the BIOS passed (two NOPs), as
# grub-install does for disks.
printf '\x90\x90' | dd of="$work/boot.img" bs=1 seek=$((drive_check)) conv=notrunc status=none
dd if="$work/boot.img" of="$disk" bs=512 count=1 conv=notrunc status=none
echo "   GRUB core.img: $core_sectors sectors at sector $start; boot.img in the MBR"
