#!/bin/bash
# SPDX-License-Identifier: MIT
# Builds the kTLS test VM under tests/vm/cache/: fetches Debian's kernel package
# (apt-get download + dpkg -x, no install), collects the modules the VM needs in
# dependency order, packs busybox-static + init.sh into an initramfs, and
# compiles ktls_probe.  Idempotent; exits 77 (with a reason) if it cannot work here.
# KTLS_VM_KERNEL=rekey builds a second VM, with a newer kernel (>= 6.14, kTLS
# KeyUpdate support) from a newer Debian suite, under tests/vm/cache/rekey/.
set -euo pipefail

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
busybox=${KTLS_VM_BUSYBOX:-/bin/busybox}
prog=${0##*/}

skip() { echo "$prog: SKIP: $*" >&2; exit 77; }
die() { echo "$prog: error: $*" >&2; exit 1; }
log() { [[ -z ${KTLS_VM_QUIET:-} ]] && echo "$prog: $*" >&2; return 0; }

# Which kernel (run.sh and probe.t derive the cache the same way).
case ${KTLS_VM_KERNEL:-default} in
default) flavour=default; cache=${KTLS_VM_CACHE:-$here/cache} ;;
rekey) flavour=rekey; cache=${KTLS_VM_CACHE:-$here/cache/rekey} ;;
*) echo "$prog: KTLS_VM_KERNEL=$KTLS_VM_KERNEL: unknown (default or rekey)" >&2; exit 2 ;;
esac
# rekey: the newest linux-image-*-amd64 of the first of these suites that has
# one at least this new.
rekey_min=6.14
rekey_suites=${KTLS_VM_KERNEL_SUITE:-trixie-backports sid}
mirror=${KTLS_VM_MIRROR:-http://deb.debian.org/debian}

# Modules the VM needs.  Their dependencies are added from depends= lines.
# fs_mods (and their deps) are needed to mount the root; init loads the others
# in the background meanwhile.
fs_mods=(virtio_pci 9pnet_virtio 9p overlay)
required_mods=(tls gcm ghash-generic ctr)
optional_mods=(aesni-intel ghash-clmulni-intel ccm chacha20poly1305
	chacha_generic chacha-x86_64 poly1305_generic poly1305-x86_64
	inet_diag tcp_diag)  # sock_diag for `show conns` (autoloaded on real nodes)
if [[ $flavour == rekey ]]; then
	# Newer kernels moved GHASH, ChaCha20 and Poly1305 into library code (built
	# in, or lib*.ko that depends= pulls in): ghash-generic may not exist, and
	# the ChaCha20 skcipher is "chacha".
	required_mods=(tls gcm ctr)
	optional_mods=(ghash-generic chacha "${optional_mods[@]}")
fi

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

# Under TCG, decompressing the (xz or zstd) bzImage takes seconds.  If the
# kernel has a PVH entry point, qemu can boot the uncompressed ELF vmlinux
# directly, which saves about 5 s per boot.  Optional: run.sh falls back to vmlinuz.
extract_vmlinux() {
	local in=$1 out=$2 off tool=xz
	off=$(LC_ALL=C grep -aboP '\xfd7zXZ\x00' "$in" 2>/dev/null | head -n 1 | cut -d: -f1) || true
	if [[ -z $off ]]; then
		# Newer Debian kernels (7.x): zstd.
		tool=zstd
		off=$(LC_ALL=C grep -aboP '\x28\xb5\x2f\xfd' "$in" 2>/dev/null | head -n 1 | cut -d: -f1) || true
	fi
	[[ -n $off ]] || return 0
	if ! command -v "$tool" >/dev/null 2>&1; then
		[[ $tool == xz ]] || log "note: $tool not installed: booting the compressed vmlinuz (slower)"
		return 0
	fi
	# xz and zstd complain about the data after the stream; the output is complete.
	tail -c +"$((off + 1))" "$in" | "$tool" -dcq >"$out.tmp" 2>/dev/null || true
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

# ver_ge A B: is kernel version A (e.g. 6.16.3+deb13-amd64) at least B (MAJOR.MINOR)?
ver_ge() {
	local a=$1 b=$2
	[[ $a =~ ^([0-9]+)\.([0-9]+) ]] || return 1
	a=$((BASH_REMATCH[1] * 1000 + BASH_REMATCH[2]))
	[[ $b =~ ^([0-9]+)\.([0-9]+) ]] || return 1
	((a >= BASH_REMATCH[1] * 1000 + BASH_REMATCH[2]))
}

# apt-get/apt-cache with a private state for SUITE under $cache/apt/SUITE: the
# system's sources, lists, pins and package cache are neither used nor touched.
papt() { # SUITE apt-get|apt-cache ARGS...
	local s=$cache/apt/$1 tool=$2
	shift 2
	"$tool" -o Dir::Etc::SourceList="$s/sources.list" -o Dir::Etc::SourceParts=/dev/null \
		-o Dir::State::Lists="$s/lists" -o Dir::Cache="$s/cache" \
		-o Dir::State::status=/dev/null -o Dir::Etc::Preferences=/dev/null \
		-o Dir::Etc::PreferencesParts=/dev/null -o Acquire::Languages=none \
		-o APT::Sandbox::User=root "$@"
}

# rekey_pkg SUITE: the image package to use from SUITE (fails if none >= $rekey_min).
rekey_pkg() {
	local s=$1 p
	if [[ -n ${KTLS_VM_KERNEL_PKG:-} ]]; then
		p=$KTLS_VM_KERNEL_PKG
	else
		p=$(papt "$s" apt-cache depends linux-image-amd64 2>/dev/null |
			sed -n 's/^ *|\{0,1\}Depends: \(linux-image-[0-9][^ <>]*-amd64\)$/\1/p' |
			head -n 1) || true
		if [[ -z $p ]]; then
			p=$(papt "$s" apt-cache pkgnames linux-image- 2>/dev/null |
				grep -E '^linux-image-[0-9]+\.[0-9]+[^ ]*-amd64$' | grep -Ev -- '-(cloud|rt)-amd64$' |
				sort -V | tail -n 1) || true
		fi
	fi
	[[ -n $p ]] && ver_ge "${p#linux-image-}" "$rekey_min" || return 1
	echo "$p"
}

# fetch_rekey: sets debs to the .deb files of the newest kernel >= $rekey_min.
# Since 7.x, Debian splits linux-image-X into linux-binary-X (vmlinuz),
# linux-modules-X and linux-base-X (config, modules.builtin); all of them are
# fetched and unpacked together.
fetch_rekey() {
	local s d pkg="" p f keyring=/usr/share/keyrings/debian-archive-keyring.gpg opt=""
	local -a pkgs=() missing=()
	[[ -r $keyring ]] && opt="[signed-by=$keyring] "
	: >"$cache/apt.log"
	for s in $rekey_suites; do
		d=$cache/apt/$s
		mkdir -p "$d/lists/partial" "$d/cache/archives/partial"
		printf 'deb %s%s %s main\n' "$opt" "$mirror" "$s" >"$d/sources.list"
		log "looking for a kernel >= $rekey_min in $s (apt-get update, private state in $d)"
		if ! papt "$s" apt-get -q update >>"$cache/apt.log" 2>&1; then
			# Offline: the lists from before (if any) still name the cached .debs.
			log "note: apt-get update for $s failed; see $cache/apt.log"
		fi
		pkg=$(rekey_pkg "$s") && break
		log "note: no linux-image-*-amd64 >= $rekey_min in $s${KTLS_VM_KERNEL_PKG:+ (KTLS_VM_KERNEL_PKG=$KTLS_VM_KERNEL_PKG)}"
		pkg=
	done
	[[ -n $pkg ]] ||
		skip "no linux-image-*-amd64 >= $rekey_min found in: $rekey_suites (offline?); see $cache/apt.log"
	pkgs=("$pkg")
	for p in $(papt "$s" apt-cache depends "$pkg" 2>/dev/null |
		sed -n 's/^ *|\{0,1\}Depends: \(linux-[a-z]*-[^ <>]*\)$/\1/p'); do
		case $p in
		linux-base-"${pkg#linux-image-}" | linux-binary-"${pkg#linux-image-}" | linux-modules-"${pkg#linux-image-}")
			pkgs+=("$p") ;;
		esac
	done
	mkdir -p "$cache/deb"
	for p in "${pkgs[@]}"; do
		[[ -n $(find "$cache/deb" -maxdepth 1 -name "${p}_*.deb") ]] || missing+=("$p")
	done
	if ((${#missing[@]})); then
		log "downloading ${missing[*]} from $s"
		if ! (cd "$cache/deb" && papt "$s" apt-get -q download "${missing[@]}") \
			>>"$cache/apt.log" 2>&1; then
			skip "apt-get download ${missing[*]} ($s) failed (offline?); see $cache/apt.log"
		fi
	fi
	debs=()
	for p in "${pkgs[@]}"; do
		f=$(find "$cache/deb" -maxdepth 1 -name "${p}_*.deb" | sort -V | tail -n 1)
		[[ -n $f ]] || skip "apt-get download $p produced no .deb"
		debs+=("$f")
	done
	# Drop kernels cached before (after a KTLS_VM_REFRESH or a newer upload).
	for f in "$cache/deb"/*.deb; do
		[[ " ${debs[*]} " == *" $f "* ]] || rm -f -- "$f"
	done
}

# unpack_ko FILE.ko.{xz,zst,gz} DIR: decompress a module (busybox insmod needs
# a plain .ko) into DIR; prints the new path.
unpack_ko() {
	local in=$1 out=$2/${1##*/} tool
	out=${out%.*}
	case $in in
	*.xz) tool=xz ;;
	*.zst) tool=zstd ;;
	*.gz) tool=gzip ;;
	*) die "module $in: unknown compression" ;;
	esac
	command -v "$tool" >/dev/null 2>&1 ||
		skip "the kernel's modules are ${in##*.ko.}-compressed and $tool is not installed"
	"$tool" -dc -- "$in" >"$out" || die "$tool -d $in failed"
	echo "$out"
}

build_kernel() {
	local deb pkg tmp f
	local -a debs=()
	if [[ -n ${KTLS_VM_KERNEL_DEB:-} ]]; then
		# One .deb, or several separated by ':' (linux-image + linux-binary + linux-modules).
		IFS=: read -ra debs <<<"$KTLS_VM_KERNEL_DEB"
		for deb in "${debs[@]}"; do
			[[ -f $deb ]] || die "KTLS_VM_KERNEL_DEB: $deb: no such file"
		done
	elif [[ $flavour == rekey ]]; then
		if [[ $(dpkg --print-architecture 2>/dev/null) != amd64 ]]; then
			skip "not an amd64 Debian host (set KTLS_VM_KERNEL_DEB=/path/to/linux-*-amd64.deb[:...])"
		fi
		command -v apt-get >/dev/null 2>&1 || skip "apt-get not found"
		fetch_rekey
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
		debs=("$deb")
	fi

	deb=$(for deb in "${debs[@]}"; do basename -- "$deb"; done)
	log "unpacking ${deb//$'\n'/ }"
	# For messages: the .deb, or the first of them.
	local src=${deb%%$'\n'*}
	((${#debs[@]} == 1)) || src+=" (+$((${#debs[@]} - 1)) more .debs)"
	tmp=$cache/kernel.tmp
	rm -rf "$tmp" "$cache/extract"
	mkdir -p "$tmp/modules"
	for f in "${debs[@]}"; do
		dpkg-deb -x "$f" "$cache/extract" || die "dpkg-deb -x $f failed"
	done

	local vmlinuz kver moddir config
	vmlinuz=$(find "$cache/extract/boot" -maxdepth 1 -name 'vmlinuz-*' 2>/dev/null | head -n 1) || true
	if [[ -n $vmlinuz ]]; then
		kver=${vmlinuz##*/vmlinuz-}
		moddir=$cache/extract/lib/modules/$kver
		config=$cache/extract/boot/config-$kver
	else
		# Newer packages (7.x): usr/lib/modules/KVER/{vmlinuz,config,...}.
		vmlinuz=$(find "$cache/extract/usr/lib/modules" -mindepth 2 -maxdepth 2 -name vmlinuz \
			2>/dev/null | head -n 1) || true
		[[ -n $vmlinuz ]] || die "no /boot/vmlinuz-* or usr/lib/modules/*/vmlinuz in $src"
		moddir=${vmlinuz%/vmlinuz}
		kver=${moddir##*/}
		config=$moddir/config
	fi
	[[ -d $moddir/kernel ]] || die "no lib/modules/$kver/kernel in $src"
	cp "$vmlinuz" "$tmp/vmlinuz"
	extract_vmlinux "$tmp/vmlinuz" "$tmp/vmlinux"
	cp "$config" "$tmp/config" 2>/dev/null || true
	if [[ $flavour == rekey ]]; then
		ver_ge "$kver" "$rekey_min" ||
			die "kernel $kver is older than $rekey_min (no kTLS rekey); KTLS_VM_KERNEL_PKG/KTLS_VM_KERNEL_DEB?"
		if [[ -s $tmp/config ]] && ! grep -Eq '^CONFIG_TLS=[my]$' "$tmp/config"; then
			die "kernel $kver has no CONFIG_TLS"
		fi
	fi
	echo "$kver" >"$tmp/kver"
	echo "$deb" >"$tmp/deb"

	# Index: normalised module name -> .ko path; and the built-in "modules".
	local -A path=() state=() builtin=()
	local f n
	while IFS= read -r -d '' f; do
		n=${f##*/}
		n=${n%.ko*}
		path[$(norm "$n")]=$f
	done < <(find "$moddir/kernel" -name '*.ko*' -print0)
	while IFS= read -r f; do
		n=${f##*/}
		builtin[$(norm "${n%.ko}")]=1
	done < <(cat "$moddir/modules.builtin" 2>/dev/null)

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
		*) # compressed (.ko.xz in newer Debian kernels): busybox insmod needs plain .ko
			mkdir -p "$tmp/ko"
			ko=$(unpack_ko "$ko" "$tmp/ko") || exit $?
			path[$m]=$ko
			;;
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

	for n in "${required_mods[@]}" "${fs_mods[@]}"; do
		visit "$n" && continue
		[[ -n ${builtin[$(norm "$n")]:-} ]] || die "module $n not found in $src"
		log "note: $n is built into $kver"
	done
	for n in "${optional_mods[@]}"; do
		visit "$n" && continue
		if [[ -n ${builtin[$(norm "$n")]:-} ]]; then
			log "note: optional module $n is built into $kver"
		else
			log "note: optional module $n not in $src"
		fi
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

	rm -rf "$cache/extract" "$kdir" "$tmp/ko"
	mv "$tmp" "$kdir"
	log "kernel $kver with ${#order[@]} modules ready"
}

# Redo the kernel step when the module selection (or its format) changes.
kstamp="v2 fs: ${fs_mods[*]} req: ${required_mods[*]} opt: ${optional_mods[*]}"
if [[ $flavour != default ]]; then
	kstamp+=" kernel: $flavour"
fi
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
