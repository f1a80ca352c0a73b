#!/usr/bin/env bash
# image-test.sh [DIR]: boots the nmos-certs image of DIR (dist/image) under
# qemu and checks the appliance from the host, twice:
#   uefi  OVMF, the qcow2 on virtio, first-boot configuration through qemu's
#         fw_cfg credentials and root's password from a CD-ROM labelled
#         NMOSCERTS, DHCP;
#   bios  SeaBIOS, the raw disk on SATA, configuration through SMBIOS type 11
#         credentials, a static network from a USB stick labelled NMOSCERTS;
#   console  UEFI without a configuration: the test answers `nmos-certs
#         setup` on the serial console (the address offered is the one DHCP
#         gave), root's SSH key comes from a NMOSCERTS stick.
# Each boot: DNS-SD (PTR, SRV, TXT, A), /cacerts, an enrollment with
# globalsign's estclient, OCSP for the certificate it got, /metrics, the
# console banner's fingerprints against /cacerts, SSH with the key given at
# first boot, the root file system grown to the disk; then a reboot keeps the
# CA and the certificate's status. The disks are copy-on-write overlays: the
# image is not changed. qemu uses TCG and user networking restricted to the
# guest, its ports forwarded to 127.0.0.1 only. The serial console of each
# boot is kept in DIR/test-<boot>.log. Exits non-zero at the first check
# that fails, saying which.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
dir=$(readlink -f "${1:-$top/dist/image}")
boots=${BOOTS:-uefi bios console}
domain=imagetest.example.test
host=est.$domain
guest_ip=10.0.2.15
boot_timeout=${BOOT_TIMEOUT:-420}

ovmf_code=/usr/share/OVMF/OVMF_CODE_4M.fd
ovmf_vars=/usr/share/OVMF/OVMF_VARS_4M.fd
estclient_version=v1.0.6

qemu_pid=
serial_log=
work=$(mktemp -d "${TMPDIR:-/tmp}/nmos-certs-image-test.XXXXXX")

stop_qemu() {
	if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
		kill "$qemu_pid" 2>/dev/null || true
		for _ in $(seq 1 50); do kill -0 "$qemu_pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$qemu_pid" 2>/dev/null || true
		wait "$qemu_pid" 2>/dev/null || true
	fi
	qemu_pid=
}
cleanup() {
	stop_qemu
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
	printf '\nimage-test: FAIL: %s\n' "$*" >&2
	if [ -n "$serial_log" ] && [ -f "$serial_log" ]; then
		printf 'image-test: serial console of this boot: %s; its last lines:\n' "$serial_log" >&2
		tail -n 40 "$serial_log" | sed 's/^/    /' >&2
	fi
	exit 1
}
say() { printf '[%4ds] %s\n' $((SECONDS - t0)) "$*"; }
ok() { printf '[%4ds]   ok: %s\n' $((SECONDS - t0)) "$*"; }

# Tools: never skipped. `make image-test` installs the Debian ones.
for tool in qemu-system-x86_64 qemu-img dig curl openssl ssh ssh-keygen go mkfs.vfat mcopy xorriso base64 ss; do
	command -v "$tool" >/dev/null || fail "$tool is missing (make image-test installs the tools)"
done
for f in "$ovmf_code" "$ovmf_vars"; do
	[ -f "$f" ] || fail "$f is missing (package ovmf)"
done

shopt -s nullglob
raws=("$dir"/nmos-certs-*.raw)
shopt -u nullglob
[ ${#raws[@]} -gt 0 ] || fail "no nmos-certs-*.raw in $dir: run make image first"
# shellcheck disable=SC2012 # names are nmos-certs-<version>.raw
raw=$(ls -t "${raws[@]}" | head -n 1)
base=${raw%.raw}
qcow2=$base.qcow2
[ -f "$qcow2" ] || fail "$qcow2 is missing"
(cd "$dir" && sha256sum --quiet -c SHA256SUMS) || fail "$dir/SHA256SUMS does not match the files"

# globalsign's EST client, built once from its module at the pinned version.
cache=${XDG_CACHE_HOME:-$HOME/.cache}/nmos-certs-image-test
estclient=$cache/estclient-$estclient_version
if [ ! -x "$estclient" ]; then
	echo "building globalsign's estclient $estclient_version"
	mkdir -p "$cache" "$work/estclient"
	(
		cd "$work/estclient"
		printf 'module estclient-build\n\ngo 1.22\n' >go.mod
		go get "github.com/globalsign/est/cmd/estclient@$estclient_version" >/dev/null 2>&1 ||
			go get "github.com/globalsign/est/cmd/estclient@$estclient_version"
		go build -o "$estclient" github.com/globalsign/est/cmd/estclient
	) || fail "could not build estclient $estclient_version"
fi

# What first boot gets: the configuration, a manufacturer root for the
# devices, root's SSH key, and (bios) a static network.
pki=$work/pki
mkdir -p "$pki"
openssl_q() { openssl "$@" 2>/dev/null; }
openssl_q req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
	-keyout "$pki/mfr-root.key" -out "$pki/mfr-root.pem" \
	-subj "/O=Image Test Manufacturer/CN=Image Test Manufacturer Root" \
	-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
openssl_q req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-keyout "$pki/device.key" -out "$pki/device.csr" \
	-subj "/O=Image Test Manufacturer/serialNumber=IT-0001/CN=image test device IT-0001"
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n' >"$pki/device.ext"
openssl_q x509 -req -in "$pki/device.csr" -CA "$pki/mfr-root.pem" \
	-CAkey "$pki/mfr-root.key" -CAcreateserial -days 30 -extfile "$pki/device.ext" -out "$pki/device.pem"
[ -s "$pki/device.pem" ] || fail "could not make the test manufacturer's device certificate"
ssh-keygen -q -t ed25519 -N '' -C image-test -f "$pki/ssh_key"
openssl passwd -6 "image-test-$RANDOM$RANDOM" >"$pki/passwd.hashed-password.root"
cp "$pki/ssh_key.pub" "$pki/ssh_authorized_keys"
cat >"$pki/nmos-certs.yaml" <<EOF
# nmos-certs image test
domain: $domain
hostname: $host
addresses: [$guest_ip]
data_dir: /var/lib/nmos-certs
listen:
  est: ":443"
  http: ":80"
  dns: ":53"
  metrics: ":9153"
  web: 127.0.0.1:8444
est:
  trusted_client_roots: [mfr-root.pem]
EOF
cat >"$pki/nmos-certs.network" <<EOF
[Match]
Type=ether

[Network]
Address=$guest_ip/24
Gateway=10.0.2.2
DNS=10.0.2.3
EOF

# The USB stick: a FAT file system labelled NMOSCERTS, made without mounting.
make_stick() {
	local img=$1
	shift
	rm -f "$img"
	mkfs.vfat -C -n NMOSCERTS "$img" 8192 >/dev/null
	mcopy -i "$img" "$@" ::/
}

free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 20000))
		if ! ss -Htuln | awk '{print $5}' | grep -q ":$p\$"; then
			echo "$p"
			return
		fi
	done
}

# wait_serial FROM PATTERN TIMEOUT: until a line of the serial log after
# line FROM matches PATTERN; fails on timeout or when qemu is gone.
wait_serial() {
	local from=$1 pattern=$2 timeout=$3 start=$SECONDS
	while :; do
		tail -n "+$((from + 1))" "$serial_log" | grep -a -q -- "$pattern" && return 0
		kill -0 "$qemu_pid" 2>/dev/null || fail "qemu exited while waiting for \"$pattern\""
		[ $((SECONDS - start)) -lt "$timeout" ] || fail "no \"$pattern\" on the serial console after ${timeout}s"
		sleep 2
	done
}
serial_lines() { wc -l <"$serial_log"; }

guest() {
	ssh -q -i "$pki/ssh_key" -p "$p_ssh" -o BatchMode=yes -o StrictHostKeyChecking=no \
		-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=10 root@127.0.0.1 "$@"
}

# banner_fingerprints FROM: the root fingerprints of the first banner on
# the console after line FROM, one per line, lower case hex without colons.
banner_fingerprints() {
	tail -n "+$(($1 + 1))" "$serial_log" | tr -d '\r' |
		awk '/CA roots \(SHA-256\)/ { n++; on = (n == 1); next }
			on && /^    [a-z]+-root-[0-9]+ +[0-9A-Fa-f:]+$/ { print tolower($2); next }
			on { on = 0 }' | tr -d ':' | sort
}

# cacerts_roots OUT: /cacerts as PEM files in OUT/, and the SHA-256 of each
# self-signed one, one per line, sorted.
cacerts_roots() {
	local d=$1 f
	mkdir -p "$d"
	curl -sSfk --max-time 30 "https://127.0.0.1:$p_est/.well-known/est/cacerts" -o "$d/cacerts.b64" ||
		fail "GET /.well-known/est/cacerts failed"
	tr -d '\r\n' <"$d/cacerts.b64" | base64 -d >"$d/cacerts.p7" || fail "/cacerts is not base64"
	openssl pkcs7 -inform DER -in "$d/cacerts.p7" -print_certs -out "$d/all.pem" 2>/dev/null ||
		fail "/cacerts is not a certs-only CMS"
	awk -v d="$d" '/BEGIN CERT/ { n++; on = 1 } on { print > (d "/cert-" n ".pem") } /END CERT/ { on = 0 }' "$d/all.pem"
	: >"$d/roots.pem"
	for f in "$d"/cert-*.pem; do
		if [ "$(openssl x509 -in "$f" -noout -subject)" = "subject=$(openssl x509 -in "$f" -noout -issuer | sed 's/^issuer=//')" ]; then
			cat "$f" >>"$d/roots.pem"
			openssl x509 -in "$f" -noout -fingerprint -sha256 | sed 's/.*=//' | tr -d ':' | tr 'A-F' 'a-f'
		fi
	done | sort
}

# DNS over TCP: qemu's user network with restrict=on drops every UDP
# datagram the guest sends, answers to forwarded queries too.
dns() { dig @127.0.0.1 -p "$p_dns" +tcp +short +time=10 +tries=2 "$@"; }
check_dns() {
	local ptr srv txt a
	ptr=$(dns PTR "_nmos-certs._tcp.$domain") || fail "dig PTR _nmos-certs._tcp.$domain failed"
	[ -n "$ptr" ] || fail "no PTR answer for _nmos-certs._tcp.$domain"
	ptr=$(head -n 1 <<<"$ptr")
	srv=$(dns SRV "$ptr") || fail "dig SRV $ptr failed"
	[ "$(awk '{print $3, $4}' <<<"$srv")" = "443 $host." ] || fail "SRV of $ptr is \"$srv\", want port 443 on $host."
	txt=$(dns TXT "$ptr") || fail "dig TXT $ptr failed"
	grep -q '"pri=' <<<"$txt" || fail "TXT of $ptr has no pri: \"$txt\""
	a=$(dns A "$host") || fail "dig A $host failed"
	[ "$a" = "$guest_ip" ] || fail "A of $host is \"$a\", want $guest_ip"
	ok "DNS-SD over TCP: PTR $ptr; SRV $srv; TXT $txt; A $a"
}

check_enroll() {
	local d=$1 issuer
	"$estclient" cacerts -server "127.0.0.1:$p_est" -insecure -out "$d/est-cacerts.pem" ||
		fail "estclient cacerts failed"
	openssl_q req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$d/node.key" \
		-subj "/CN=node1.$domain" -addext "subjectAltName=DNS:node1.$domain" -out "$d/node.csr"
	"$estclient" enroll -server "127.0.0.1:$p_est" -insecure \
		-certs "$pki/device.pem" -key "$pki/device.key" -csr "$d/node.csr" -out "$d/node.pem" ||
		fail "estclient enroll failed"
	openssl x509 -in "$d/node.pem" -noout -ext subjectAltName 2>/dev/null | grep -q "DNS:node1.$domain" ||
		fail "the enrolled certificate is not for node1.$domain"
	openssl verify -CAfile "$d/roots.pem" -untrusted "$d/all.pem" "$d/node.pem" >/dev/null ||
		fail "the enrolled certificate does not verify to a root of /cacerts"
	issuer=$(openssl x509 -in "$d/node.pem" -noout -issuer | sed 's/^issuer=//')
	for f in "$d"/cert-*.pem; do
		if [ "$(openssl x509 -in "$f" -noout -subject | sed 's/^subject=//')" = "$issuer" ]; then
			cp "$f" "$d/node-issuer.pem"
		fi
	done
	[ -f "$d/node-issuer.pem" ] || fail "the enrolled certificate's issuer is not in /cacerts"
	ok "estclient $estclient_version: cacerts, enroll with the manufacturer's device certificate: $(openssl x509 -in "$d/node.pem" -noout -subject)"
}

# check_ocsp DIR STATUS
check_ocsp() {
	local d=$1 out
	out=$(openssl ocsp -issuer "$d/node-issuer.pem" -cert "$d/node.pem" -url "http://127.0.0.1:$p_http/ocsp" \
		-CAfile "$d/all.pem" -timeout 30 2>&1) || fail "openssl ocsp failed: $out"
	grep -q "^Response verify OK" <<<"$out" || fail "the OCSP response does not verify: $out"
	grep -q "$d/node.pem: good" <<<"$out" || fail "OCSP status is not good: $out"
	ok "OCSP: $(grep "node.pem:" <<<"$out")"
}

check_metrics() {
	local m
	m=$(curl -sSf --max-time 30 "http://127.0.0.1:$p_met/metrics") || fail "GET /metrics failed"
	grep -q '^nmos_certs_build_info{' <<<"$m" || fail "/metrics has no nmos_certs_build_info"
	ok "/metrics: $(grep '^nmos_certs_build_info{' <<<"$m")"
}

# check_system MODE: inside, over SSH with the key given at first boot.
check_system() {
	local mode=$1 failed size efi
	guest true || fail "SSH with the key given at first boot does not work"
	ok "SSH: root login with the key given at first boot"
	failed=$(guest systemctl --failed --no-legend --plain) || fail "systemctl --failed over SSH"
	[ -z "$failed" ] || fail "failed units: $failed"
	for u in systemd-timesyncd.service systemd-networkd.service nmos-certs.service ssh.service; do
		guest systemctl is-active --quiet "$u" || fail "$u is not active"
	done
	guest systemctl is-enabled --quiet apt-daily-upgrade.timer || fail "apt-daily-upgrade.timer (unattended-upgrades) is not enabled"
	guest "grep -q 'Unattended-Upgrade \"1\"' /etc/apt/apt.conf.d/20auto-upgrades" || fail "unattended-upgrades is off"
	[ "$(guest systemctl show -P NRestarts nmos-certs.service)" = 0 ] ||
		fail "nmos-certs.service restarted: $(guest journalctl -b -u nmos-certs.service --no-pager | tail -n 20)"
	ok "units: none failed; timesyncd, networkd, nmos-certs (never restarted), ssh active; unattended-upgrades on"
	efi=$(guest 'if [ -d /sys/firmware/efi ]; then echo uefi; else echo bios; fi')
	[ "$efi" = "${mode/console/uefi}" ] || fail "booted by $efi, want ${mode/console/uefi}"
	size=$(guest findmnt -bno SIZE /)
	[ "$size" -gt $((3 * 1024 * 1024 * 1024)) ] || fail "/ is $size bytes: it did not grow to the 4 GiB disk"
	ok "booted by $efi; / grew to $((size / 1048576)) MiB on the 4 GiB disk"
	[ "$(guest hostname)" = est ] || fail "host name is $(guest hostname), want est"
	if [ "$mode" = bios ]; then
		guest test -f /etc/systemd/network/10-nmos-certs.network || fail "the static network file from the stick is not installed"
		guest "ip -4 -o addr show scope global" | grep -q "inet $guest_ip/24 .*\(valid_lft forever\)" ||
			fail "the static address $guest_ip/24 is not configured"
		ok "static network from the NMOSCERTS stick: $guest_ip/24"
	else
		guest "ip -4 -o addr show scope global" | grep -q "inet $guest_ip/24 .*dynamic" ||
			fail "no DHCP address $guest_ip/24"
		ok "DHCP: $guest_ip/24"
	fi
	if [ "$mode" = uefi ]; then
		[ "$(guest getent shadow root | cut -d: -f2)" = "$(cat "$pki/passwd.hashed-password.root")" ] ||
			fail "root's password hash is not the one on the NMOSCERTS CD-ROM"
		ok "root's password from the NMOSCERTS CD-ROM"
	fi
}

# start_vm MODE: qemu for MODE, in the background.
start_vm() {
	local mode=$1 serial="file:$serial_log" disk=$work/$1.qcow2 c
	p_ssh=$(free_port) p_est=$(free_port) p_http=$(free_port) p_dns=$(free_port) p_met=$(free_port)
	local fwd="hostfwd=tcp:127.0.0.1:$p_ssh-:22,hostfwd=tcp:127.0.0.1:$p_est-:443"
	fwd+=",hostfwd=tcp:127.0.0.1:$p_http-:80,hostfwd=tcp:127.0.0.1:$p_met-:9153"
	fwd+=",hostfwd=tcp:127.0.0.1:$p_dns-:53"
	if [ "$mode" = console ]; then
		# The serial console through two FIFOs: qemu reads ser.in and
		# writes ser.out, which the test copies to the log and answers.
		rm -f "$work/ser.in" "$work/ser.out"
		mkfifo "$work/ser.in" "$work/ser.out"
		serial="pipe:$work/ser"
	fi
	# shellcheck disable=SC2054 # commas separate qemu's sub-options
	local args=(
		-accel tcg -machine q35 -smp 2 -m 1536 -nodefaults -vga none -display none
		-serial "$serial"
		-netdev "user,id=n0,restrict=on,$fwd" -device virtio-net-pci,netdev=n0
	)
	case $mode in
	uefi | console)
		qemu-img create -q -f qcow2 -b "$qcow2" -F qcow2 "$disk" 4G
		cp "$ovmf_vars" "$work/vars.fd"
		# shellcheck disable=SC2054
		args+=(
			-drive "if=pflash,format=raw,unit=0,readonly=on,file=$ovmf_code"
			-drive "if=pflash,format=raw,unit=1,file=$work/vars.fd"
			-drive "if=virtio,format=qcow2,file=$disk"
		)
		;;&
	uefi)
		# A CD-ROM labelled NMOSCERTS with root's password hash: an item no
		# credential gives is taken from the volume.
		mkdir -p "$work/iso"
		cp "$pki/passwd.hashed-password.root" "$work/iso/"
		xorriso -as mkisofs -quiet -V NMOSCERTS -J -R -o "$work/config.iso" "$work/iso" 2>/dev/null ||
			fail "xorriso could not make the configuration ISO"
		# shellcheck disable=SC2054
		args+=(
			-fw_cfg "name=opt/io.systemd.credentials/nmos-certs.yaml,file=$pki/nmos-certs.yaml"
			-fw_cfg "name=opt/io.systemd.credentials/mfr-root.pem,file=$pki/mfr-root.pem"
			-fw_cfg "name=opt/io.systemd.credentials/ssh_authorized_keys,file=$pki/ssh_authorized_keys"
			-drive "if=none,id=cd,media=cdrom,readonly=on,format=raw,file=$work/config.iso"
			-device ide-cd,drive=cd,bus=ide.1
		)
		;;
	console)
		make_stick "$work/stick.img" "$pki/ssh_authorized_keys"
		# shellcheck disable=SC2054
		args+=(
			-device qemu-xhci -drive "if=none,id=stick,format=raw,file=$work/stick.img"
			-device usb-storage,drive=stick
		)
		;;
	bios)
		qemu-img create -q -f qcow2 -b "$raw" -F raw "$disk" 4G
		make_stick "$work/stick.img" "$pki/nmos-certs.network"
		for c in nmos-certs.yaml mfr-root.pem ssh_authorized_keys; do
			args+=(-smbios "type=11,value=io.systemd.credential.binary:$c=$(base64 -w0 "$pki/$c")")
		done
		# shellcheck disable=SC2054
		args+=(
			-drive "if=none,id=d0,format=qcow2,file=$disk" -device ide-hd,drive=d0,bus=ide.0
			-device qemu-xhci -drive "if=none,id=stick,format=raw,file=$work/stick.img"
			-device usb-storage,drive=stick
		)
		;;
	*) fail "unknown boot $mode" ;;
	esac
	say "$mode: booting $(basename "$([ "$mode" = bios ] && echo "$raw" || echo "$qcow2")") (serial console: $serial_log)"
	qemu-system-x86_64 "${args[@]}" &
	qemu_pid=$!
	if [ "$mode" = console ]; then
		cat "$work/ser.out" >>"$serial_log" &
		exec 7<>"$work/ser.in"
	fi
}

# answer FROM PROMPT TEXT: waits for PROMPT on the serial console after
# line FROM and types TEXT and Enter.
answer() {
	wait_serial "$1" "$2" 300
	sleep 0.5
	printf '%s\r' "$3" >&7
}

# answer_setup: the operator at the serial console.
answer_setup() {
	local from
	wait_serial 0 'nmos-certs setup: an empty answer keeps' "$boot_timeout"
	from=$(($(serial_lines) - 1))
	answer "$from" 'DNS domain of the NMOS network' "$domain"
	answer "$from" "host name, inside that domain \\[$host\\]" ''
	answer "$from" "IP addresses, for its A and AAAA records (comma separated) \\[$guest_ip" ''
	answer "$from" 'Manufacturer root CA certificates' ''
	answer "$from" 'Hold requests without a trusted manufacturer' ''
	answer "$from" "Write this to /etc/nmos-certs/nmos-certs.yaml?" y
	answer "$from" 'A password for root' ''
	ok "setup on the serial console answered: domain $domain, the offered host name $host and address $guest_ip (DHCP's)"
}

# check_first_boot MODE DIR: the appliance as first boot left it.
check_first_boot() {
	local mode=$1 d=$2 fpc fp
	fpc=$(cacerts_roots "$d")
	fp=$(banner_fingerprints 0)
	[ -n "$fp" ] || fail "no root fingerprints in the console banner"
	[ "$fp" = "$fpc" ] || fail "the banner's root fingerprints ($fp) are not those of /cacerts ($fpc)"
	ok "/cacerts: $(grep -c BEGIN "$d/all.pem") certificates; its roots are the banner's: $(tr '\n' ' ' <<<"$fp")"
	check_dns
	if [ "$mode" != console ]; then
		check_enroll "$d"
		check_ocsp "$d"
	fi
	check_metrics
	check_system "$mode"
}

# run_boot MODE
run_boot() {
	local mode=$1 b0=$SECONDS d1 d2 fp1 fp2 fpc src
	serial_log=$dir/test-$mode.log
	: >"$serial_log"
	start_vm "$mode"
	if [ "$mode" = console ]; then
		answer_setup
		src="console setup on ttyS0"
	else
		src="a system credential"
	fi
	wait_serial 0 'CA roots (SHA-256)' "$boot_timeout"
	sleep 1
	d1=$((SECONDS - b0))
	say "$mode: first boot served, banner on the console after ${d1}s"
	if [ "$mode" != console ]; then
		grep -a -q 'nmos-certs.yaml from a system credential' "$serial_log" ||
			fail "the console does not say the configuration came from a credential"
	fi
	check_first_boot "$mode" "$work/$mode-1"
	[ "$(guest cat /var/lib/nmos-certs-image/provisioned)" = "source: $src" ] ||
		fail "provisioned says $(guest cat /var/lib/nmos-certs-image/provisioned), want source: $src"
	ok "configuration from: $src"

	if [ "$mode" = console ]; then
		timings+=("$mode: first boot to banner ${d1}s (the answers typed as the prompts came), whole run $((SECONDS - b0))s")
	else
		say "$mode: rebooting"
		local r0=$SECONDS l0
		l0=$(serial_lines)
		guest systemctl reboot || true
		wait_serial "$l0" 'Linux version' "$boot_timeout"
		l0=$(($(serial_lines) - 1))
		wait_serial "$l0" 'CA roots (SHA-256)' "$boot_timeout"
		sleep 1
		d2=$((SECONDS - r0))
		say "$mode: served again, banner on the console ${d2}s after the reboot"
		fp1=$(banner_fingerprints 0)
		fp2=$(banner_fingerprints "$l0")
		[ "$fp2" = "$fp1" ] || fail "the CA changed across the reboot: $fp1 before, $fp2 after"
		fpc=$(cacerts_roots "$work/$mode-2")
		[ "$fpc" = "$fp1" ] || fail "/cacerts roots changed across the reboot"
		cp "$work/$mode-1"/node*.pem "$work/$mode-2/"
		check_ocsp "$work/$mode-2"
		ok "after the reboot: the same CA roots, the certificate still good"
		timings+=("$mode: first boot to banner ${d1}s, reboot to banner ${d2}s, whole run $((SECONDS - b0))s")
	fi
	guest systemctl poweroff || true
	for _ in $(seq 1 60); do kill -0 "$qemu_pid" 2>/dev/null || break; sleep 1; done
	stop_qemu
	[ "$mode" != console ] || exec 7>&-
	serial_log=
}

t0=$SECONDS
timings=()
for b in $boots; do run_boot "$b"; done
echo
echo "image-test: PASS ($(basename "$base")): every check held, in $((SECONDS - t0))s"
printf '  %s\n' "${timings[@]}"
