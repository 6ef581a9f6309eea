#!/usr/bin/env bash
# Runs one command inside a small qemu VM that has a real soft-RoCE device.
#
#   scripts/vm/run-in-vm.sh [options] -- COMMAND ARGS...
#
# The VM boots Debian's stock kernel (fetched with apt, cached), loads rdma_rxe,
# creates rxe0 on a veth interface with address 10.77.0.1, and runs COMMAND in
# the host's own root filesystem (shared read-only over 9p, writable through a
# tmpfs overlay) in the host's current directory. COMMAND's output appears on
# stdout and its exit status becomes this script's. See docs/verbs-vm.md.
#
# With --link and --address, rxe0 sits instead on a virtio NIC whose other end
# is a second VM's NIC, joined by a TCP connection on the host's loopback: two
# VMs, two hosts, real cross-host RoCE (scripts/test-verbs-two-hosts.sh).
#
# Exit status: COMMAND's; 124 if the VM ran out of time; 125 if the harness
# itself failed (packages, kernel, boot).
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly script_dir
readonly cache_dir="${FABRIC_VM_CACHE:-${HOME:-/root}/.cache/swift-fabric/vm}"
# modprobe and depmod live in sbin, which a non-root PATH may lack.
export PATH="$PATH:/usr/sbin:/sbin"

# Addresses and device inside the VM. Without --link they never leave it
# (-nic none); with --link, vm_addr and vm_prefix come from --address.
vm_addr=10.77.0.1
vm_prefix=24
readonly vm_peer_addr=10.77.0.2
readonly vm_device=rxe0

# What the initramfs loads, in this order; modprobe adds each one's
# dependencies in front of it. crc32_generic is no symbol dependency of
# rdma_rxe, but rxe asks the crypto API for crc32 and `rdma link add` fails
# ("No such file or directory") without it. sch_netem and sch_tbf let tests
# add delay, loss and rate limits with tc.
# virtio_net (with net_failover and failover, its dependencies) is for --link;
# loaded without a NIC it does nothing, and one image serves both modes.
readonly vm_modules=(virtio_pci 9pnet_virtio 9p overlay veth virtio_net
    crc32_generic ib_core ib_uverbs rdma_rxe rdma_cm rdma_ucm sch_netem sch_tbf)
# Modules a kernel may lack. Newer kernels (7.x, --kernel-package) have no
# crc32_generic, and their rxe calls the crc32 library directly.
readonly vm_optional_modules=(crc32_generic)

readonly host_packages=(qemu-system-x86 busybox-static kmod cpio gzip xz-utils
    iproute2 ibverbs-providers ibverbs-utils rdmacm-utils perftest)

timeout_seconds=600
memory_mib=2048
# Which Debian kernel: a package, optionally /RELEASE for apt's -t.
kernel_spec=${FABRIC_VM_KERNEL_PACKAGE:-linux-image-amd64}
kernel_name=""
apt_target=()
verbose=0
share_dirs=()
extra_env=()
work_dir=""
qemu_pid=""
# --link: "listen" or "connect", the host's loopback port, and --address.
link_mode=""
link_port=""
link_address=""
cache_lock_fd=""

usage() {
    cat <<'EOF'
usage: scripts/vm/run-in-vm.sh [options] -- COMMAND ARGS...

Runs COMMAND inside a qemu VM with a soft-RoCE device rxe0 (address 10.77.0.1),
in the host's current directory, and exits with COMMAND's status.

options:
  --timeout SECONDS   kill the VM after this long (default 600); exit 124
  --memory MIB        VM memory (default 2048)
  --share-out DIR     mount host directory DIR read-write at the same path in
                      the VM, for result files (may be repeated)
  --env NAME[=VALUE]  pass an environment variable into the VM (may be repeated)
  --link listen:PORT|connect:PORT
                      give the VM one virtio NIC (eth0) joined to another VM's
                      over TCP on 127.0.0.1:PORT, and rxe0 on it instead of
                      the veth pair; the listen side must be started first
  --address A.B.C.D/NN
                      eth0's address with --link (FABRIC_VM_ADDR in the VM)
  --kernel-package PACKAGE[/RELEASE]
                      boot this Debian kernel instead of what linux-image-amd64
                      means today: a meta package (linux-image-amd64) or an
                      ABI-named one (linux-image-7.3.4+deb13-amd64), from apt
                      release RELEASE if given (e.g. trixie-backports, which
                      must be in apt's sources); default linux-image-amd64
  --verbose           show the kernel's and init's console output on stderr
  -h, --help          this text

environment: FABRIC_VM_CACHE (default ~/.cache/swift-fabric/vm) holds the
kernel and initramfs; FABRIC_VM_KERNEL_PACKAGE is the default for
--kernel-package; FABRIC_JOB_SECRET is passed into the VM when set.
EOF
}

log() { printf 'vm: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 125; }

# Microseconds since the epoch, for timings without a float in sight.
now_us() { echo "${EPOCHREALTIME//[.,]/}"; }
# Seconds between two now_us stamps, with one decimal.
us_diff() { local d=$(($2 - $1)); printf '%d.%d' $((d / 1000000)) $((d % 1000000 / 100000)); }
seconds_since() { us_diff "$1" "$(now_us)"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

parse_args() {
    while [ $# -gt 0 ]; do
        case $1 in
            --timeout) timeout_seconds=${2:?--timeout needs a value}; shift 2 ;;
            --memory) memory_mib=${2:?--memory needs a value}; shift 2 ;;
            --share-out) share_dirs+=("${2:?--share-out needs a directory}"); shift 2 ;;
            --env) extra_env+=("${2:?--env needs NAME or NAME=VALUE}"); shift 2 ;;
            --link) link_mode=${2:?--link needs listen:PORT or connect:PORT}; shift 2 ;;
            --address) link_address=${2:?--address needs A.B.C.D/NN}; shift 2 ;;
            --kernel-package) kernel_spec=${2:?--kernel-package needs PACKAGE[/RELEASE]}; shift 2 ;;
            --verbose) verbose=1; shift ;;
            -h|--help) usage; exit 0 ;;
            --) shift; break ;;
            *) usage >&2; exit 125 ;;
        esac
    done
    [ $# -gt 0 ] || { usage >&2; exit 125; }
    [[ $timeout_seconds =~ ^[0-9]+$ ]] || die "--timeout wants whole seconds"
    [[ $memory_mib =~ ^[0-9]+$ ]] || die "--memory wants MiB"
    if [ -n "$link_mode" ] || [ -n "$link_address" ]; then check_link_args; fi
    check_kernel_spec
    command_args=("$@")
}

# Splits --kernel-package PACKAGE[/RELEASE] into kernel_name and apt_target.
check_kernel_spec() {
    [[ $kernel_spec =~ ^([a-z0-9][a-z0-9.+-]*)(/([A-Za-z0-9][A-Za-z0-9.~+-]*))?$ ]] ||
        die "--kernel-package wants PACKAGE or PACKAGE/RELEASE, not '$kernel_spec'"
    kernel_name=${BASH_REMATCH[1]}
    if [ -n "${BASH_REMATCH[3]}" ]; then apt_target=(-t "${BASH_REMATCH[3]}"); fi
}

# Splits --link into link_mode and link_port, and --address into vm_addr and
# vm_prefix. The two options only make sense together.
check_link_args() {
    if [ -z "$link_mode" ] || [ -z "$link_address" ]; then die "--link and --address go together"; fi
    [[ $link_mode =~ ^(listen|connect):([0-9]{1,5})$ ]] ||
        die "--link wants listen:PORT or connect:PORT, not '$link_mode'"
    link_mode=${BASH_REMATCH[1]}
    link_port=$((10#${BASH_REMATCH[2]}))
    if [ "$link_port" -lt 1 ] || [ "$link_port" -gt 65535 ]; then die "--link: port $link_port is out of range"; fi
    [[ $link_address =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})/([0-9]{1,2})$ ]] ||
        die "--address wants A.B.C.D/NN, not '$link_address'"
    local octet
    for octet in "${BASH_REMATCH[@]:1:4}"; do
        [ $((10#$octet)) -le 255 ] || die "--address: $link_address is no IPv4 address"
    done
    vm_prefix=$((10#${BASH_REMATCH[5]}))
    if [ "$vm_prefix" -lt 8 ] || [ "$vm_prefix" -gt 30 ]; then die "--address: prefix /$vm_prefix, want /8 to /30"; fi
    vm_addr=${link_address%/*}
}

# A MAC address made of the IPv4 address's last three bytes. qemu would give
# both VMs the same default MAC, and the two ends of a link must differ.
link_mac() {
    local b c d
    IFS=. read -r _ b c d <<<"$vm_addr"
    printf '52:54:00:%02x:%02x:%02x' "$((10#$b))" "$((10#$c))" "$((10#$d))"
}

# Two runs started together (the two VMs of one test) would both install
# packages, fetch the kernel and build the same initramfs, and a kernel
# update in one would delete the other's files. The second run waits here
# and then finds everything ready. Released before qemu starts.
lock_cache() {
    mkdir -p "$cache_dir"
    exec {cache_lock_fd}>"$cache_dir/.lock"
    if ! flock -n "$cache_lock_fd"; then
        log "waiting for another run to finish preparing $cache_dir"
        flock "$cache_lock_fd"
    fi
}

unlock_cache() {
    exec {cache_lock_fd}>&-
    cache_lock_fd=""
}

ensure_packages() {
    local missing=() package
    for package in "${host_packages[@]}"; do
        [ "$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null)" = "install ok installed" ] ||
            missing+=("$package")
    done
    if [ ${#missing[@]} -eq 0 ]; then return; fi
    log "installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}

# The ABI-named package that linux-image-amd64 points at today, e.g.
# linux-image-6.1.0-56-amd64. Old ABIs leave the mirror, so it is never pinned.
# With --kernel-package, the same for that meta package (and release), or the
# ABI-named package itself if apt knows it.
kernel_package() {
    if [[ $kernel_name =~ ^linux-image-[0-9] ]]; then
        if [ -n "$(kernel_candidate_version "$kernel_name")" ]; then echo "$kernel_name"; fi
        return
    fi
    # apt-cache fails for a release apt does not know: an empty answer.
    apt-cache "${apt_target[@]}" depends "$kernel_name" 2>/dev/null |
        awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }' || true
}

kernel_candidate_version() {
    apt-cache "${apt_target[@]}" policy "$1" 2>/dev/null |
        awk '$1 == "Candidate:" && $2 != "(none)" { print $2; exit }' || true
}

# Newer Debian kernels (7.3.4 in trixie-backports) come in parts:
# linux-image-ABI is empty and depends on linux-binary-ABI (vmlinuz),
# linux-modules-ABI and linux-base-ABI (System.map, modules.order, ...), all
# of the same version. Prints those parts, none for a kernel in one package.
kernel_parts() {
    local package=$1 version=$2
    apt-cache depends "$package=$version" 2>/dev/null |
        awk -v abi="${package#linux-image-}" '$1 == "Depends:" &&
            ($2 == "linux-binary-" abi || $2 == "linux-modules-" abi || $2 == "linux-base-" abi) { print $2 }' |
        sort -u || true
}

# The cache entry's --kernel-package; entries from before it are the default.
kernel_spec_of() {
    if [ -f "$1/spec" ]; then cat "$1/spec"; else echo linux-image-amd64; fi
}

# vmlinuz in an unpacked kernel: /boot/vmlinuz-RELEASE, or in the split
# packages /usr/lib/modules/RELEASE/vmlinuz.
kernel_vmlinuz() {
    local dir=$1 release=$2
    if [ -f "$dir/root/boot/vmlinuz-$release" ]; then
        echo "$dir/root/boot/vmlinuz-$release"
    elif [ -f "$dir/root/usr/lib/modules/$release/vmlinuz" ]; then
        echo "$dir/root/usr/lib/modules/$release/vmlinuz"
    fi
}

# Downloads and unpacks one kernel package into TARGET (NAME_VERSION under
# $cache_dir/kernels). depmod runs here because the package's postinst never
# does. Called in an `if`, where set -e is off, so every step is checked.
unpack_kernel() {
    local package=$1 version=$2 target=$3 tmp release part
    local downloads=("$package=$version")
    for part in $(kernel_parts "$package" "$version"); do downloads+=("$part=$version"); done
    mkdir -p "$cache_dir/kernels"
    tmp=$(mktemp -d "$cache_dir/kernels/.partial.XXXXXX") || return 1
    # Sandbox user root: otherwise apt warns that _apt cannot write here.
    if (cd "$tmp" && apt-get -qq -o APT::Sandbox::User=root download "${downloads[@]}") &&
        unpack_debs "$tmp" &&
        # Newer packages put the modules in /usr/lib/modules only; depmod -b
        # and modprobe -d look in /lib/modules.
        { [ -e "$tmp/root/lib" ] || [ ! -d "$tmp/root/usr/lib/modules" ] || ln -s usr/lib "$tmp/root/lib"; } &&
        release=$(ls "$tmp/root/lib/modules") &&
        depmod -b "$tmp/root" "$release"; then
        rm -f "$tmp"/*.deb
        echo "$kernel_spec" >"$tmp/spec"
        # Another run may have unpacked the same kernel meanwhile; keep theirs.
        mv -T "$tmp" "$target" 2>/dev/null || rm -rf "$tmp"
    else
        rm -rf "$tmp"
        return 1
    fi
}

# Unpacks every .deb in DIR into DIR/root.
unpack_debs() {
    local deb
    for deb in "$1"/*.deb; do
        dpkg -x "$deb" "$1/root" || return 1
    done
}

# Sets kernel_dir, kernel_release and kernel_origin.
fetch_kernel() {
    local package version key
    package=$(kernel_package)
    if [ -z "$package" ]; then
        as_root apt-get update -qq
        package=$(kernel_package)
    fi
    if [ -n "$package" ]; then
        version=$(kernel_candidate_version "$package")
        key="${package}_${version}"
        kernel_dir="$cache_dir/kernels/$key"
        kernel_origin=cached
        if [ ! -d "$kernel_dir/root" ]; then
            kernel_origin=downloaded
            log "fetching $package $version"
            if ! unpack_kernel "$package" "$version" "$kernel_dir"; then
                # The package lists may be older than the mirror.
                as_root apt-get update -qq
                package=$(kernel_package)
                version=$(kernel_candidate_version "$package")
                kernel_dir="$cache_dir/kernels/${package}_${version}"
                if [ ! -d "$kernel_dir/root" ] && ! unpack_kernel "$package" "$version" "$kernel_dir"; then
                    kernel_dir=""
                fi
            fi
            if [ -n "$kernel_dir" ]; then
                prune_kernels "$(basename "$kernel_dir")"
            fi
        fi
    fi
    if [ -z "${kernel_dir:-}" ] || [ ! -d "$kernel_dir/root" ]; then
        # No mirror today: any kernel fetched before for the same
        # --kernel-package will do.
        local entry
        kernel_dir=""
        for entry in "$cache_dir"/kernels/linux-image-*/; do
            entry=${entry%/}
            if [ -d "$entry/root" ] && [ "$(kernel_spec_of "$entry")" = "$kernel_spec" ]; then kernel_dir=$entry; fi
        done
        [ -n "$kernel_dir" ] || die "cannot download a Debian kernel (apt-get download ${package:-$kernel_spec}; is its release in apt's sources?)"
        kernel_origin="cached, offline fallback"
        log "warning: using the cached $(basename "$kernel_dir")"
    fi
    kernel_release=$(ls "$kernel_dir/root/lib/modules")
    [ -n "$(kernel_vmlinuz "$kernel_dir" "$kernel_release")" ] || die "no vmlinuz in $kernel_dir"
    choose_kernel_image
}

# Sets kernel_image. Debian's vmlinuz decompresses itself (xz; zstd in newer
# kernels) before the kernel prints a line, which takes about 5 s under
# emulation. The plain ELF inside it has a PVH entry point that qemu boots
# directly, so it is unpacked once on the host and cached; vmlinuz stays the
# fallback.
choose_kernel_image() {
    local vmlinuz vmlinux="$kernel_dir/vmlinux" partial
    vmlinuz=$(kernel_vmlinuz "$kernel_dir" "$kernel_release")
    if [ ! -f "$vmlinux" ]; then
        partial=$(mktemp "$vmlinux.XXXXXX")
        if extract_vmlinux "$vmlinuz" "$partial"; then mv "$partial" "$vmlinux"; else rm -f "$partial"; fi
    fi
    if [ -f "$vmlinux" ]; then kernel_image=$vmlinux; else kernel_image=$vmlinuz; fi
}

# Finds the first xz stream in a bzImage and decompresses it (or, failing
# that, the first zstd frame); succeeds only if the result is an ELF file.
extract_vmlinux() {
    local offset
    offset=$(LC_ALL=C grep -m 1 -obUaP '\xFD7zXZ\x00' "$1" | head -n 1 | cut -d: -f1)
    if [ -n "$offset" ]; then
        # xz stops at the end of the stream; a pipe from tail would then fail
        # with SIGPIPE, so tail feeds it through a process substitution.
        xz -dc --single-stream < <(tail -c +$((offset + 1)) "$1") >"$2" 2>/dev/null || return 1
    else
        offset=$(LC_ALL=C grep -m 1 -obUaP '\x28\xB5\x2F\xFD' "$1" | head -n 1 | cut -d: -f1)
        [ -n "$offset" ] && command -v zstd >/dev/null || return 1
        # zstd complains about the bytes after the frame (the bzImage's
        # trailer) and fails, but has written the whole frame by then.
        zstd -qdc < <(tail -c +$((offset + 1)) "$1") >"$2" 2>/dev/null || true
    fi
    [ "$(head -c 4 "$2")" = $'\x7fELF' ]
}

# Keeps the cache to one kernel per --kernel-package (KEEP for this one),
# and removes the initramfs images built for the kernels it deletes.
prune_kernels() {
    local keep=$1 entry modules
    for entry in "$cache_dir"/kernels/*; do
        [ -d "$entry" ] || continue
        [ "$(basename "$entry")" != "$keep" ] || continue
        [ "$(kernel_spec_of "$entry")" = "$kernel_spec" ] || continue
        for modules in "$entry"/root/lib/modules/*/; do
            [ -d "$modules" ] || continue
            rm -f "$cache_dir/initramfs/$(basename "$modules")"-*.cpio.gz
        done
        rm -rf "$entry"
    done
}

# Module files for vm_modules with their dependencies first, no repeats,
# as paths under the unpacked kernel.
module_files() {
    local module seen=" " file depends
    for module in "${vm_modules[@]}"; do
        if ! depends=$(modprobe -d "$kernel_dir/root" -S "$kernel_release" --show-depends "$module" 2>/dev/null); then
            case " ${vm_optional_modules[*]} " in
                *" $module "*) continue ;;
                *) die "kernel $kernel_release has no module $module" ;;
            esac
        fi
        while read -r file; do
            case $seen in *" $file "*) continue ;; esac
            seen+="$file "
            echo "$file"
        done < <(awk '$1 == "insmod" { print $2 }' <<<"$depends")
    done
}

# Copies one module into the staging tree, uncompressed (busybox insmod
# reads plain .ko files only).
stage_module() {
    local source=$1 dest_dir=$2 name
    name=$(basename "$source")
    case $name in
        *.ko.xz) xz -dc "$source" >"$dest_dir/${name%.xz}"; name=${name%.xz} ;;
        *.ko.zst) zstd -qdc "$source" >"$dest_dir/${name%.zst}"; name=${name%.zst} ;;
        *.ko.gz) gzip -dc "$source" >"$dest_dir/${name%.gz}"; name=${name%.gz} ;;
        *) cp "$source" "$dest_dir/$name" ;;
    esac
    echo "$name"
}

# Writes the initramfs part that is the same for every run: busybox, the
# modules and init. Cached by kernel and by the content that goes into it.
# Sets base_initramfs and initramfs_origin.
build_base_initramfs() {
    local files key stage file partial
    files=$(module_files)
    [ -n "$files" ] || die "modprobe found none of the modules in $kernel_dir"
    key=$( { cat "$script_dir/init.sh"; echo "$files"; dpkg-query -W -f='${Version}' busybox-static; } |
        sha256sum | cut -c1-16)
    base_initramfs="$cache_dir/initramfs/$kernel_release-$key.cpio.gz"
    initramfs_origin=cached
    [ -f "$base_initramfs" ] && return
    initramfs_origin=built
    mkdir -p "$cache_dir/initramfs"
    stage=$(mktemp -d "$work_dir/initramfs.XXXXXX")
    mkdir -p "$stage"/{bin,dev,proc,sys,lib/modules}
    cp /bin/busybox "$stage/bin/busybox"
    install -m 0755 "$script_dir/init.sh" "$stage/init"
    while read -r file; do
        stage_module "$file" "$stage/lib/modules"
    done <<<"$files" >"$stage/lib/modules/load-order"
    partial=$(mktemp "$base_initramfs.XXXXXX")
    write_cpio "$stage" "$partial"
    mv "$partial" "$base_initramfs"
}

write_cpio() {
    (cd "$1" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -1) >"$2"
}

# Quotes a string for sh (busybox) as a single word.
sh_quote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

# The per-run part of the initramfs: /job/config, /job/shares, /job/run.sh.
# The kernel unpacks concatenated cpio archives in order, so it is simply
# appended to the cached base image.
build_job_initramfs() {
    local job=$work_dir/job-root/job index=0 dir
    mkdir -p "$job"
    {
        echo "VM_ADDR=$(sh_quote "$vm_addr")"
        echo "VM_PREFIX=$vm_prefix"
        echo "VM_PEER_ADDR=$(sh_quote "$vm_peer_addr")"
        if [ -n "$link_mode" ]; then echo "VM_LINK=nic"; else echo "VM_LINK=veth"; fi
        echo "VM_DEVICE=$(sh_quote "$vm_device")"
        echo "NINEP_MSIZE=262144"
        echo "VERBOSE=$verbose"
    } >"$job/config"
    : >"$job/shares"
    for dir in "${share_dirs[@]}"; do
        echo "out$index $dir" >>"$job/shares"
        index=$((index + 1))
    done
    write_run_script >"$job/run.sh"
    chmod 0600 "$job/run.sh"   # it may hold FABRIC_JOB_SECRET
    write_cpio "$work_dir/job-root" "$work_dir/job.cpio.gz"
    cat "$base_initramfs" "$work_dir/job.cpio.gz" >"$work_dir/initrd.img"
}

# run.sh, executed by bash in the VM with an empty environment.
write_run_script() {
    local home=${HOME:-/root} entry name
    [ -d "$home" ] || home=/root
    echo '#!/bin/bash'
    echo 'ulimit -l unlimited'
    printf 'export %s=%q\n' \
        PATH "$PATH" HOME "$home" USER root LOGNAME root \
        TERM dumb LANG C.UTF-8 \
        FABRIC_VM 1 FABRIC_VM_ADDR "$vm_addr" FABRIC_VM_DEVICE "$vm_device"
    if [ -n "${FABRIC_JOB_SECRET+set}" ]; then
        printf 'export FABRIC_JOB_SECRET=%q\n' "$FABRIC_JOB_SECRET"
    fi
    for entry in "${extra_env[@]}"; do
        name=${entry%%=*}
        [[ $name =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "--env: bad name '$name'"
        if [[ $entry == *=* ]]; then
            printf 'export %s=%q\n' "$name" "${entry#*=}"
        elif [ -n "${!name+set}" ]; then
            printf 'export %s=%q\n' "$name" "${!name}"
        fi
    done
    printf 'cd -- %q || exit 125\n' "$PWD"
    printf 'exec'
    printf ' %q' "${command_args[@]}"
    printf '\n'
}

check_shares() {
    local i dir
    for i in "${!share_dirs[@]}"; do
        dir=${share_dirs[$i]}
        [ -d "$dir" ] || die "--share-out $dir: not a directory"
        dir=$(cd "$dir" && pwd -P)
        [[ $dir != *$'\n'* ]] || die "--share-out: no newlines in paths, please"
        share_dirs[i]=$dir
    done
}

qemu_args() {
    # The emulated CPU's TSC fails the kernel's synchronisation check, and
    # the fallback clock (HPET) makes every clock_gettime a trap into an
    # emulated device, tens of microseconds: benchmarks that time each
    # iteration would measure the clock. The TSC is fine for timing here.
    local index=0 dir append="console=ttyS0 panic=-1 rdinit=/init tsc=reliable clocksource=tsc"
    if [ "$verbose" = 1 ]; then append+=" loglevel=7"; else append+=" quiet loglevel=0"; fi
    # tcg, not kvm: the kvm here is a nested hypervisor on which the stock
    # kernel hangs at boot. No default network device (-nic none).
    printf '%s\n' -accel tcg,thread=multi -cpu max -smp 2 -m "$memory_mib" \
        -nic none -no-reboot -nographic \
        -kernel "$kernel_image" \
        -initrd "$work_dir/initrd.img" -append "$append" \
        -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap
    if [ -n "$link_mode" ]; then
        # The only network: Ethernet frames over one TCP connection on the
        # host's loopback to the other VM's qemu. Never user-mode or tap.
        printf '%s\n' -netdev "socket,id=link0,$link_mode=127.0.0.1:$link_port" \
            -device "virtio-net-pci,netdev=link0,mac=$(link_mac)"
    fi
    for dir in "${share_dirs[@]}"; do
        # qemu's option parser takes ",," for a comma inside a value.
        printf '%s\n' -virtfs "local,path=${dir//,/,,},mount_tag=out$index,security_model=none,multidevs=remap"
        index=$((index + 1))
    done
}

# Reads the serial console: lines between the markers go to stdout, the rest
# to the log (and to stderr with --verbose). Records when the command started
# and its exit status in files, since this runs in a background subshell.
relay_console() {
    local line state=boot
    while IFS= read -r line || [ -n "$line" ]; do
        line=${line%$'\r'}
        printf '%s\n' "$line" >>"$work_dir/console.log"
        case $state in
            boot)
                # The firmware's escape sequences may precede it on the line.
                if [[ $line == *FABRIC_VM_BEGIN ]]; then
                    now_us >"$work_dir/begin"
                    state=running
                elif [ "$verbose" = 1 ]; then
                    printf '%s\n' "$line" >&2
                fi
                ;;
            running)
                if [[ $line =~ ^(.*)FABRIC_VM_EXIT=([0-9]+)$ ]]; then
                    if [ -n "${BASH_REMATCH[1]}" ]; then printf '%s\n' "${BASH_REMATCH[1]}"; fi
                    echo "${BASH_REMATCH[2]}" >"$work_dir/exit"
                    now_us >"$work_dir/end"
                    state=finished
                else
                    printf '%s\n' "$line"
                fi
                ;;
            finished)
                if [ "$verbose" = 1 ]; then printf '%s\n' "$line" >&2; fi
                ;;
        esac
    done
}

# The end of the console (without the firmware's terminal escapes) and
# whatever qemu itself said.
show_failure_context() {
    if [ -s "$work_dir/console.log" ]; then
        tail -n 40 "$work_dir/console.log" | sed 's/\x1b\[[0-9;?]*[A-Za-z]//g; s/\x1bc//g' >&2
    fi
    if [ -s "$work_dir/qemu.err" ]; then
        cat "$work_dir/qemu.err" >&2
    fi
}

cleanup() {
    if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
        kill -TERM "$qemu_pid" 2>/dev/null || true
        wait "$qemu_pid" 2>/dev/null || true
    fi
    if [ -n "$work_dir" ]; then rm -rf "$work_dir"; fi
}

# Boots the VM and waits for it. Sets qemu_status.
boot_vm() {
    local args
    mapfile -t args < <(qemu_args)
    mkfifo "$work_dir/console"
    relay_console <"$work_dir/console" &
    local relay_pid=$!
    # timeout keeps its own process group, so the traps below end it on ^C.
    timeout --kill-after=10 "$timeout_seconds" \
        qemu-system-x86_64 "${args[@]}" </dev/null >"$work_dir/console" 2>"$work_dir/qemu.err" &
    qemu_pid=$!
    qemu_status=0
    wait "$qemu_pid" || qemu_status=$?
    qemu_pid=""
    wait "$relay_pid" || true
}

main() {
    parse_args "$@"
    check_shares
    work_dir=$(mktemp -d "${TMPDIR:-/tmp}/fabric-vm.XXXXXX")
    trap cleanup EXIT
    trap 'log "interrupted"; exit 130' INT
    trap 'log "terminated"; exit 143' TERM

    local t
    t=$(now_us)
    lock_cache
    ensure_packages
    fetch_kernel
    log "kernel $kernel_release ($kernel_origin, $(seconds_since "$t") s)"

    t=$(now_us)
    build_base_initramfs
    build_job_initramfs
    unlock_cache
    log "initramfs ($initramfs_origin, $(seconds_since "$t") s)"
    if [ -n "$link_mode" ]; then
        log "link: $link_mode on 127.0.0.1:$link_port, eth0 $vm_addr/$vm_prefix"
    fi

    local start
    start=$(now_us)
    boot_vm

    if [ ! -f "$work_dir/exit" ]; then
        if [ "$qemu_status" -eq 124 ] || [ "$qemu_status" -eq 137 ]; then
            log "error: timed out after $timeout_seconds s; the VM was killed (last console lines below)"
        else
            log "error: the VM stopped without reporting an exit status (qemu status $qemu_status)"
        fi
        show_failure_context
        if [ "$qemu_status" -eq 124 ] || [ "$qemu_status" -eq 137 ]; then exit 124; fi
        exit 125
    fi
    local status begin end
    status=$(cat "$work_dir/exit")
    begin=$(cat "$work_dir/begin")
    end=$(cat "$work_dir/end")
    log "boot to command $(us_diff "$start" "$begin") s, command $(us_diff "$begin" "$end") s, exit $status"
    exit "$status"
}

main "$@"
