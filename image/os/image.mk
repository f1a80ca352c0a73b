# The OS image: `make image` builds dist/image/ (raw, qcow2, VMDK, OVA,
# SHA256SUMS) from the Debian package; `make image-test` boots it under
# qemu, UEFI and BIOS, and checks the appliance from the host. Neither is
# part of `make test`. See image/os/README.md. Included by the Makefile.

IMAGE_DIR   := dist/image
# Debian packages the build and the test use on the build host.
IMAGE_TOOLS := mmdebstrap:mmdebstrap qemu-img:qemu-utils qemu-system-x86_64:qemu-system-x86 \
	mcopy:mtools mkfs.vfat:dosfstools grub-mkimage:grub-pc-bin sfdisk:fdisk \
	mkfs.ext4:e2fsprogs uuidgen:uuid-runtime dig:dnsutils curl:curl openssl:openssl \
	ssh:openssh-client ssh-keygen:openssh-client xorriso:xorriso
IMAGE_FILES := /usr/share/OVMF/OVMF_CODE_4M.fd:ovmf /usr/lib/grub/i386-pc/boot.img:grub-pc-bin
IMAGE_SUDO  := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: image image-test image-tools

## image: the OS image in dist/image/ (as root or through sudo; about 5 minutes)
image: image-tools
	$(MAKE) deb DEB_ARCHS=amd64
	$(IMAGE_SUDO) env OUT="$(CURDIR)/$(IMAGE_DIR)" bash image/os/build.sh dist/nmos-certs_$(DEB_VERSION)_amd64.deb

## image-test: boot the image under qemu (UEFI and BIOS) and check it from the host
image-test: image-tools
	bash image/os/image-test.sh "$(IMAGE_DIR)"

image-tools:
	@missing=""; \
	for pair in $(IMAGE_TOOLS); do \
		command -v $${pair%%:*} >/dev/null 2>&1 || [ -x /usr/sbin/$${pair%%:*} ] || missing="$$missing $${pair#*:}"; \
	done; \
	for pair in $(IMAGE_FILES); do \
		[ -e $${pair%%:*} ] || missing="$$missing $${pair#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(IMAGE_SUDO) apt-get update -qq && $(IMAGE_SUDO) apt-get install -y -qq $$missing; \
	fi
