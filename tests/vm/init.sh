#!/bin/busybox sh
# SPDX-License-Identifier: MIT
# /init of the ktls-sidecar test VM (busybox ash, runs as PID 1 in the initramfs).
# Loads the kernel modules listed in /modules.list, mounts the host's / (9p,
# read-only) under a tmpfs overlay, chroots into it and runs the command that
# tests/vm/run.sh put into the "vmctl" 9p share, then prints an exit marker.
# shellcheck shell=sh
# (No "set -e": a failing PID 1 panics the kernel; errors are handled below.)
set -u

PATH=/bin:/sbin
export PATH

/bin/busybox mkdir -p /proc /sys /dev /bin /sbin
/bin/busybox --install -s /bin
mount -t devtmpfs devtmpfs /dev
# The initramfs has no /dev/console node (so it can be built without root);
# (re)open the console now that devtmpfs is mounted.
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys

# Raw output: no \n -> \r\n translation on the serial console.
stty -opost 2>/dev/null

say() { echo "vm-init: $*"; }
debug=
case " $(cat /proc/cmdline) " in *" ktlsvm.debug "*) debug=1 ;; esac
# With ktlsvm.debug (run.sh --verbose): progress with the VM's uptime.
trace() { [ -z "$debug" ] || say "$* (uptime $(cut -d' ' -f1 /proc/uptime)s)"; }
trace "init started"
die() {
	say "FATAL: $*"
	say "kernel log tail:"
	dmesg 2>/dev/null | tail -n 30
	poweroff -f
	sleep 10
	exit 1
}

# Modules, in dependency order (computed by build.sh from depends= lines).
# Each line: FILE required|optional fs|other.
load_modules() { # GROUP
	while read -r mod need group; do
		if [ -z "$mod" ] || [ "$group" != "$1" ]; then continue; fi
		if ! out=$(insmod "/lib/modules/$mod" 2>&1); then
			case "$out" in
			*"File exists"*) ;;
			*)
				if [ "$need" = required ]; then
					die "insmod $mod: $out"
				fi
				say "note: optional module $mod not loaded: $out"
				;;
			esac
		fi
	done </modules.list
	trace "modules ($1) loaded"
}
# Crypto/TLS modules load in the background while the root is mounted.
load_modules other &
modpid=$!
load_modules fs

ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up || die "cannot bring up lo"
hostname ktls-vm

opts=trans=virtio,version=9p2000.L,msize=512000
mkdir -p /lower /upper /newroot /vmctl
mount -t 9p -o "ro,$opts,cache=loose" hostroot /lower || die "cannot mount host / over 9p"
mount -t 9p -o "ro,$opts" vmctl /vmctl || die "cannot mount vmctl share"
mount -t tmpfs -o mode=0755 tmpfs /upper || die "tmpfs for overlay"
mkdir -p /upper/data /upper/work
mount -t overlay -o lowerdir=/lower,upperdir=/upper/data,workdir=/upper/work \
	overlay /newroot || die "cannot mount overlay"

trace "overlay mounted"
R=/newroot
for d in proc sys dev tmp run; do mkdir -p "$R/$d"; done
mount -t proc proc "$R/proc" || die "mount proc"
mount -t sysfs sysfs "$R/sys" || die "mount sysfs"
mount -t devtmpfs devtmpfs "$R/dev" || die "mount devtmpfs"
mkdir -p "$R/dev/pts" "$R/dev/shm"
mount -t devpts -o gid=5,mode=0620,ptmxmode=0666 devpts "$R/dev/pts" || die "mount devpts"
mount -t tmpfs -o mode=1777 tmpfs "$R/dev/shm" || die "mount /dev/shm"
# /tmp stays the host's, seen through the overlay (writes land in RAM): a
# checkout under /tmp (CI clones there) must be visible in the VM.
mount -t tmpfs -o mode=0755 tmpfs "$R/run" || die "mount /run"
mkdir -p "$R/run/lock" "$R/run/ktls-vm"
chmod 1777 "$R/run/lock"
mount --bind /vmctl "$R/run/ktls-vm" || die "bind vmctl"
ln -s /proc/self/fd "$R/dev/fd" 2>/dev/null
ln -s /proc/self/fd/0 "$R/dev/stdin" 2>/dev/null
ln -s /proc/self/fd/1 "$R/dev/stdout" 2>/dev/null
ln -s /proc/self/fd/2 "$R/dev/stderr" 2>/dev/null
# Debian's PostgreSQL and PgBouncer default to sockets in /run/postgresql.
if grep -q '^postgres:' "$R/etc/passwd" 2>/dev/null; then
	mkdir -p "$R/run/postgresql"
	chroot "$R" /bin/chown postgres:postgres /run/postgresql 2>/dev/null
	chmod 2775 "$R/run/postgresql"
fi

wait "$modpid" || die "loading modules failed"
nonce=$(cat /vmctl/nonce) || die "no nonce in vmctl share"
[ -f /vmctl/cmd ] || die "no cmd in vmctl share"

trace "starting command"
dmesg -n 1 # only KERN_EMERG (and panics/oopses) may interleave with CMD's output
echo "__KTLS_VM_START_${nonce}__"
chroot "$R" /usr/bin/env -i \
	PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	HOME=/root USER=root LOGNAME=root SHELL=/bin/bash TERM=dumb \
	KTLS_VM=1 \
	/bin/bash /run/ktls-vm/cmd </dev/null
rc=$?
echo "__KTLS_VM_EXIT_${nonce}__ $rc"
poweroff -f
sleep 10
