# Stage 1, base image (local VM only): the kernel, an initrd that boots from a virtio disk, DHCP
# on the first NIC with systemd-networkd, a console on ttyS0, the qemu guest agent. Runs inside the
# debootstrapped root (bake.sh). On AWS this stage is Debian's own AMI: see packaging/packer/.
# Everything the application needs comes in the next stage, which both share.
here=/tmp/kiln-stage

# A small initrd: only what mounting an ext4 root from a virtio disk takes (the default, MODULES=most,
# packs every storage driver). Written before the kernel is installed, so the initrd is built once.
install -D -m 0644 "$here/files/base/initramfs-tools/conf.d/kiln-vm.conf" /etc/initramfs-tools/conf.d/kiln-vm.conf
install -D -m 0644 "$here/files/base/initramfs-tools/modules" /etc/initramfs-tools/modules

apt-get update -q
# What booting a VM needs on top of minbase: systemd as init, udev (devices, the ACPI power
# button), dbus (for logind, which turns the power button into a clean shutdown), CA certificates.
# The cloud kernel flavour: virtio, ACPI and no hardware drivers a VM never sees (half the size).
# qemu-guest-agent answers the host over a virtio-serial port, which only a qemu host offers (the
# e2e runs `kiln status` through it); without that port its unit does not start.
apt-get install -y -q --no-install-recommends systemd systemd-sysv udev dbus ca-certificates \
    linux-image-cloud-amd64 initramfs-tools qemu-guest-agent

# DHCP on the first NIC; network-online.target waits for it (kiln is ordered after it).
install -D -m 0644 "$here/files/base/network/10-dhcp.network" /etc/systemd/network/10-dhcp.network
systemctl enable systemd-networkd.service systemd-networkd-wait-online.service
install -D -m 0644 "$here/files/base/fstab" /etc/fstab
echo kiln-vm >/etc/hostname
# qemu's user network answers DNS at 10.0.2.3.
echo "nameserver 10.0.2.3" >/etc/resolv.conf

# Boot-time housekeeping timers a short-lived immutable instance does not need.
systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer >/dev/null 2>&1 || true

apt-get clean
rm -rf /var/lib/apt/lists/*
