#!/bin/busybox sh
# PID 1 of the test VM that scripts/vm/run-in-vm.sh boots.
#
# It runs from the initramfs: busybox, a few kernel modules (loaded in the
# order listed in /lib/modules/load-order) and /job, which the host writes
# for every run (job/config: settings in sh syntax; job/run.sh: the command).
# The host's / arrives read-only over 9p; a tmpfs overlay makes it writable
# (writes are lost at power-off), and the command runs chrooted into it, so
# the host's binaries, toolchain and rdma-core are all there unchanged.
#
# Protocol with the host: everything the command prints comes between a line
# FABRIC_VM_BEGIN and a line FABRIC_VM_EXIT=<status>; anything else on the
# console is boot noise that the host hides unless asked (--verbose).

/bin/busybox --install -s /bin
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

mount -t devtmpfs devtmpfs /dev
# The kernel may have started us without a console on fds 0-2.
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
# Keep newlines as they are: no \r\n translation on the serial line.
stty -onlcr 2>/dev/null

. /job/config

power_off() {
    sync
    poweroff -f
    # Only reached if ACPI power-off failed; qemu runs with -no-reboot,
    # so a reboot ends it too.
    echo b >/proc/sysrq-trigger
}

# Ends the VM with a status the host reports as a harness failure.
fail() {
    echo "fabric-vm: $*"
    dmesg | tail -n 20
    echo FABRIC_VM_EXIT=125
    power_off
}

load_modules() {
    while read -r module; do
        insmod "/lib/modules/$module" || fail "insmod $module failed"
    done </lib/modules/load-order
}

# The host's / (read-only 9p) under a tmpfs overlay, at /newroot.
mount_root() {
    mkdir -p /lower /rw /newroot
    mount -t 9p -o "trans=virtio,version=9p2000.L,ro,msize=$NINEP_MSIZE,cache=loose" hostroot /lower ||
        fail "cannot mount the host's / over 9p"
    mount -t tmpfs -o mode=0755 tmpfs /rw
    mkdir -p /rw/upper /rw/work
    mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot ||
        fail "cannot mount the overlay"
    # The host's /proc, /sys, /dev and /run mean nothing in here.
    mount -t proc proc /newroot/proc
    mount -t sysfs sysfs /newroot/sys
    mount -t devtmpfs devtmpfs /newroot/dev
    mkdir -p /newroot/dev/pts /newroot/dev/shm
    mount -t devpts devpts /newroot/dev/pts
    mount -t tmpfs -o mode=1777 tmpfs /newroot/dev/shm
    mount -t tmpfs -o mode=0755 tmpfs /newroot/run
}

# Writable host directories (--share-out), each at its host path.
# /job/shares has one "TAG PATH" line per directory.
mount_shares() {
    while read -r tag path; do
        mkdir -p "/newroot$path"
        mount -t 9p -o "trans=virtio,version=9p2000.L,msize=$NINEP_MSIZE" "$tag" "/newroot$path" ||
            fail "cannot mount shared directory $path"
    done </job/shares
}

# Runs a host program in the new root. Through /usr/bin/env because busybox
# would otherwise prefer its own applet of the same name (its `ip` cannot
# make a veth pair).
in_root() {
    chroot /newroot /usr/bin/env "$@"
}

# One veth pair, both ends in this namespace, with rxe0 to come on va (a
# second rxe on vb would not talk to it).
setup_veth() {
    in_root ip link add va type veth peer name vb || fail "cannot create veth pair"
    in_root ip addr add "$VM_ADDR/$VM_PREFIX" dev va
    in_root ip addr add "$VM_PEER_ADDR/$VM_PREFIX" dev vb
    in_root ip link set va up
    in_root ip link set vb up
    netdev=va
}

# The virtio NIC of --link, joined to the other VM's; the kernel names it
# eth0 (no udev here). Its probe may finish just after insmod returns.
setup_nic() {
    wait_for 50 test -e /sys/class/net/eth0 || fail "no eth0: is the VM's NIC missing?"
    in_root ip addr add "$VM_ADDR/$VM_PREFIX" dev eth0 || fail "cannot set eth0's address"
    in_root ip link set eth0 up
    netdev=eth0
}

# wait_for TENTHS COMMAND...: runs COMMAND every 0.1 s until it succeeds,
# at most TENTHS times.
wait_for() {
    tries=$1
    shift
    until "$@" 2>/dev/null; do
        tries=$((tries - 1))
        [ $tries -gt 0 ] || return 1
        sleep 0.1
    done
}

# One rxe device, on the veth pair or on the NIC; the only RDMA device.
setup_rdma() {
    in_root ip link set lo up
    if [ "$VM_LINK" = nic ]; then setup_nic; else setup_veth; fi
    in_root rdma link add "$VM_DEVICE" type rxe netdev "$netdev" ||
        fail "rdma link add $VM_DEVICE on $netdev failed"
    # The port turns ACTIVE once the netdev has carrier; wait briefly for it.
    wait_for 50 grep -q ACTIVE "/sys/class/infiniband/$VM_DEVICE/ports/1/state" ||
        fail "$VM_DEVICE port did not become ACTIVE"
}

run_job() {
    mkdir -p /newroot/run/fabric-vm
    cp /job/run.sh /newroot/run/fabric-vm/run.sh
    # Registering memory needs it; the limit is inherited through chroot.
    ulimit -l unlimited
    echo FABRIC_VM_BEGIN
    # A clean environment: run.sh exports what the host chose.
    chroot /newroot /usr/bin/env -i /bin/bash /run/fabric-vm/run.sh </dev/null
    status=$?
    echo "FABRIC_VM_EXIT=$status"
}

[ "$VERBOSE" = 1 ] || dmesg -n 1
load_modules
mount_root
mount_shares
setup_rdma
run_job
power_off
