#!/bin/bash
# SPDX-License-Identifier: MIT
# Builds the kTLS test VM under tests/vm/cache/: fetches Debian's kernel package
# (apt-get download + dpkg -x, no install), collects the modules the VM needs in
# dependency order, packs busybox-static + init.sh into an initramfs, and
# compiles ktls_probe.  Idempotent; exits 77 (with a reason) if it cannot work here.
set -euo pipefail

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
cache=${KTLS_VM_CACHE:-$here/cache}
busybox=${KTLS_VM_BUSYBOX:-/bin/busybox}
prog=${0##*/}

skip() { echo "$prog: SKIP: $*" >&2; exit 77; }
die() { echo "$prog: error: $*" >&2; exit 1; }
log() { [[ -z ${KTLS_VM_QUIET:-} ]] && echo "$prog: $*" >&2; return 0; }

# Modules the VM needs.  Their dependencies are added from depends= lines.
# fs_mods (and their deps) are needed to mount the root; init loads the others
# in the background meanwhile.
fs_mods=(virtio_pci 9pnet_virtio 9p overlay)
required_mods=(tls gcm ghash-generic ctr)
optional_mods=(aesni-intel ghash-clmulni-intel ccm chacha20poly1305
	chacha_generic chacha-x86_64 poly1305_generic poly1305-x86_64
	inet_diag tcp_diag)  # sock_diag for `show conns` (autoloaded on real nodes)

# --- prerequisites -------------------------------------------------------
command -v qemu-system-x86_64 >/dev/null 2>&1 ||
	skip "qemu-system-x86_64 not found (apt-get install qemu-system-x86)"
[[ -x $busybox ]] || skip "$busybox not found (apt-get install busybox-static)"
if LC_ALL=C ldd "$busybox" 2>&1 | grep -q '=>'; then
	skip "$busybox is dynamically linked (apt-get install busybox-static)"
fi
for t in cpio gzip dpkg-deb sha256sum; do
	command -v "$t" >/dev/null 2>&1 || skip "$t not found"
done
cc=${CC:-cc}
command -v "$cc" >/dev/null 2>&1 || skip "no C compiler ($cc) to build ktls_probe"

mkdir -p "$cache"
exec 9>"$cache/.lock"
if command -v flock >/dev/null 2>&1; then
	flock 9
fi

# --- kernel --------------------------------------------------------------
kdir=$cache/kernel

find_kernel_pkg() {
	local p
	if [[ -n ${KTLS_VM_KERNEL_PKG:-} ]]; then
		echo "$KTLS_VM_KERNEL_PKG"
		return
	fi
	command -v apt-cache >/dev/null 2>&1 || return 1
	p=$(apt-cache depends linux-image-amd64 2>/dev/null |
		sed -n 's/^ *|\{0,1\}Depends: \(linux-image-[0-9][^ <>]*-amd64\)$/\1/p' |
		head -n 1) || true
	if [[ -z $p ]]; then
		# Fallback: the newest versioned (signed) image package apt knows about.
		p=$(apt-cache pkgnames linux-image- 2>/dev/null |
			grep -E '^linux-image-[0-9]+\.[0-9]+\.[0-9]+-[0-9]+-amd64$' |
			sort -V | tail -n 1) || true
	fi
	[[ -n $p ]] || return 1
	echo "$p"
}

# Under TCG, decompressing the (xz) bzImage takes seconds.  If the kernel has a
# PVH entry point, qemu can boot the uncompressed ELF vmlinux directly, which
# saves about 5 s per boot.  Optional: run.sh falls back to vmlinuz.
extract_vmlinux() {
	local in=$1 out=$2 off
	command -v xz >/dev/null 2>&1 || return 0
	off=$(LC_ALL=C grep -aboP '\xfd7zXZ\x00' "$in" 2>/dev/null | head -n 1 | cut -d: -f1) || true
	[[ -n $off ]] || return 0
	# xz complains about the data after the stream; the output is complete.
	tail -c +"$((off + 1))" "$in" | xz -dcq >"$out.tmp" 2>/dev/null || true
	if [[ $(head -c 4 "$out.tmp" 2>/dev/null) == $'\x7fELF' ]] &&
		{ ! command -v readelf >/dev/null 2>&1 ||
			readelf -n "$out.tmp" 2>/dev/null | grep -q 'type: (0x00000012)'; }; then
		mv "$out.tmp" "$out"
	else
		rm -f "$out.tmp"
		log "note: no PVH-bootable vmlinux; booting the compressed vmlinuz (slower)"
	fi
}

# Normalised module name: the kernel treats '-' and '_' alike.
norm() { echo "${1//-/_}"; }

build_kernel() {
	local deb pkg tmp
	if [[ -n ${KTLS_VM_KERNEL_DEB:-} ]]; then
		deb=$KTLS_VM_KERNEL_DEB
		[[ -f $deb ]] || die "KTLS_VM_KERNEL_DEB=$deb: no such file"
	else
		if [[ $(dpkg --print-architecture 2>/dev/null) != amd64 ]]; then
			skip "not an amd64 Debian host (set KTLS_VM_KERNEL_DEB=/path/to/linux-image-*-amd64.deb)"
		fi
		command -v apt-get >/dev/null 2>&1 || skip "apt-get not found"
		pkg=$(find_kernel_pkg) ||
			skip "cannot find the linux-image-6.x-N-amd64 package behind linux-image-amd64 (apt-get update?)"
		mkdir -p "$cache/deb"
		deb=$(find "$cache/deb" -maxdepth 1 -name "${pkg}_*.deb" | sort -V | tail -n 1)
		if [[ -z $deb ]]; then
			log "downloading $pkg"
			if ! (cd "$cache/deb" &&
				apt-get -q -o APT::Sandbox::User=root download "$pkg") \
				>"$cache/apt.log" 2>&1; then
				skip "apt-get download $pkg failed (offline? stale lists -> apt-get update); see $cache/apt.log"
			fi
			deb=$(find "$cache/deb" -maxdepth 1 -name "${pkg}_*.deb" | sort -V | tail -n 1)
			[[ -n $deb ]] || skip "apt-get download $pkg produced no .deb"
			# Drop kernels cached before (after a KTLS_VM_REFRESH).
			find "$cache/deb" -maxdepth 1 -name '*.deb' ! -path "$deb" -delete
		fi
	fi

	log "unpacking $(basename -- "$deb")"
	tmp=$cache/kernel.tmp
	rm -rf "$tmp" "$cache/extract"
	mkdir -p "$tmp/modules"
	dpkg-deb -x "$deb" "$cache/extract" || die "dpkg-deb -x $deb failed"

	local vmlinuz kver moddir
	vmlinuz=$(find "$cache/extract/boot" -maxdepth 1 -name 'vmlinuz-*' | head -n 1)
	[[ -n $vmlinuz ]] || die "no /boot/vmlinuz-* in $deb"
	kver=${vmlinuz##*/vmlinuz-}
	moddir=$cache/extract/lib/modules/$kver
	[[ -d $moddir ]] || die "no lib/modules/$kver in $deb"
	cp "$vmlinuz" "$tmp/vmlinuz"
	extract_vmlinux "$tmp/vmlinuz" "$tmp/vmlinux"
	cp "$cache/extract/boot/config-$kver" "$tmp/config" 2>/dev/null || true
	echo "$kver" >"$tmp/kver"
	basename -- "$deb" >"$tmp/deb"

	# Index: normalised module name -> .ko path.
	local -A path=() state=()
	local f n
	while IFS= read -r -d '' f; do
		n=${f##*/}
		n=${n%.ko*}
		path[$(norm "$n")]=$f
	done < <(find "$moddir/kernel" -name '*.ko*' -print0)

	# Depth-first topological sort over depends= (and softdep pre:) lines.
	local -a order=()
	local -A deps=()
	visit() {
		local m=$1 ko d
		m=$(norm "$m")
		[[ ${state[$m]:-} == "done" ]] && return 0
		[[ ${state[$m]:-} == busy ]] && die "module dependency cycle at $m"
		ko=${path[$m]:-}
		[[ -n $ko ]] || return 1
		case $ko in
		*.ko) ;;
		*) die "compressed module $ko not supported (busybox insmod needs plain .ko)" ;;
		esac
		state[$m]=busy
		deps[$m]=$(tr '\0' '\n' <"$ko" | sed -n \
			-e 's/^depends=//p' \
			-e 's/^softdep=.*pre: *\([^:]*\)\( post:.*\)\{0,1\}$/\1/p' |
			tr ',' ' ') || true
		for d in ${deps[$m]}; do
			visit "$d" || log "note: $m wants $d, which is not a module (built in?)"
		done
		state[$m]="done"
		order+=("$m")
	}
	# closure SET ROOT...: add ROOTs and everything they depend on to SET.
	closure() {
		local -n set=$1
		shift
		local m
		for m in "$@"; do
			m=$(norm "$m")
			[[ -n ${set[$m]:-} ]] && continue
			set["$m"]=1
			# shellcheck disable=SC2086 # word list
			closure "${!set}" ${deps[$m]:-}
		done
	}

	for n in "${required_mods[@]}"; do
		visit "$n" || die "module $n not found in $deb"
	done
	for n in "${fs_mods[@]}"; do
		visit "$n" || die "module $n not found in $deb"
	done
	for n in "${optional_mods[@]}"; do
		visit "$n" || log "note: optional module $n not in $deb"
	done
	local -A req=() fs=()
	closure req "${required_mods[@]}" "${fs_mods[@]}"
	closure fs "${fs_mods[@]}"

	# modules.list: FILE required|optional fs|other  (in load order)
	: >"$tmp/modules.list"
	for n in "${order[@]}"; do
		f=${path[$n]}
		cp "$f" "$tmp/modules/${f##*/}"
		printf '%s %s %s\n' "${f##*/}" \
			"$([[ -n ${req[$n]:-} ]] && echo required || echo optional)" \
			"$([[ -n ${fs[$n]:-} ]] && echo fs || echo other)" >>"$tmp/modules.list"
	done

	rm -rf "$cache/extract" "$kdir"
	mv "$tmp" "$kdir"
	log "kernel $kver with ${#order[@]} modules ready"
}

# Redo the kernel step when the module selection (or its format) changes.
kstamp="v2 fs: ${fs_mods[*]} req: ${required_mods[*]} opt: ${optional_mods[*]}"
if [[ ! -s $kdir/vmlinuz || ! -s $kdir/modules.list || -n ${KTLS_VM_REFRESH:-} ||
	$(cat "$kdir/stamp" 2>/dev/null) != "$kstamp" ]]; then
	build_kernel
	echo "$kstamp" >"$kdir/stamp"
fi

# --- initramfs -----------------------------------------------------------
initrd=$cache/initramfs.cpio.gz
stamp=$(cat "$here/init.sh" "$here/build.sh" "$kdir/modules.list" "$kdir/kver" "$busybox" |
	sha256sum | cut -d' ' -f1)
if [[ ! -s $initrd || $(cat "$cache/initramfs.stamp" 2>/dev/null) != "$stamp" ]]; then
	log "building initramfs"
	root=$cache/initramfs.tmp
	rm -rf "$root"
	mkdir -p "$root/bin" "$root/sbin" "$root/lib/modules" "$root/dev" "$root/proc" "$root/sys"
	cp "$busybox" "$root/bin/busybox"
	cp "$here/init.sh" "$root/init"
	chmod 0755 "$root/init" "$root/bin/busybox"
	cp "$kdir"/modules/*.ko "$root/lib/modules/"
	cp "$kdir/modules.list" "$root/modules.list"
	(cd "$root" && find . -print0 | LC_ALL=C sort -z |
		cpio --null -o -H newc --owner=0:0 --quiet | gzip -6 -n) >"$initrd.tmp" ||
		die "creating initramfs failed"
	mv "$initrd.tmp" "$initrd"
	echo "$stamp" >"$cache/initramfs.stamp"
	rm -rf "$root"
fi

# --- ktls_probe ----------------------------------------------------------
probe=$cache/ktls_probe
if [[ ! -x $probe || $here/ktls_probe.c -nt $probe ]]; then
	log "compiling ktls_probe"
	# shellcheck disable=SC2086 # CFLAGS is a list of words
	"$cc" -std=gnu11 -Wall -Wextra -O2 ${CFLAGS:-} -o "$probe.tmp" "$here/ktls_probe.c" ||
		die "compiling ktls_probe.c failed"
	mv "$probe.tmp" "$probe"
fi

exit 0
