#!/bin/sh
# Boot a throw-away Linux guest with N virtual NUMA nodes under QEMU (software emulation,
# no KVM needed) and run binaries in it. Works from a machine with a single NUMA node.
#
# usage: scripts/numa-vm.sh NODES CPUS_PER_NODE BINARY [BINARY...]
#        scripts/numa-vm.sh --prepare          (only fetch QEMU, kernel and busybox)
#
#   Every BINARY is copied into a busybox initramfs (with the shared libraries `ldd`
#   lists; static binaries need none) and run in order with $GUEST_ARGS; after each,
#   the guest prints "GUEST: exit=<status> <name>". Then it powers off. The guest's
#   console goes to stdout. Node k has vCPUs k*CPUS_PER_NODE .. and MEM_PER_NODE_MB of
#   memory; after them come MEMORY_ONLY_NODES nodes with memory and no CPUs (as CXL or
#   persistent memory shows up); the distance between different nodes is 20.
#
# env:  WORK (default /tmp/numa-vm)  MEM_PER_NODE_MB (default 512)  TIMEOUT (s, default 300)
#       GUEST_ARGS (arguments for every binary, default none)
#       MEMORY_ONLY_NODES (CPU-less memory nodes after the others, default 0)
#
# exit: the status of QEMU (124: TIMEOUT reached); 3 if the guest's packages cannot be
#       fetched (no apt, no network, not x86_64 Debian/Ubuntu): callers treat that as
#       "cannot run here", not as a failure.
#
# How: QEMU, its firmware, the Debian cloud kernel and a static busybox are unpacked from
# Debian packages with `apt-get download` + `dpkg-deb -x` into $WORK/root — nothing is
# installed, because `apt-get install qemu-system-x86` can replace newer QEMU tools that
# a machine already has. The first run downloads about 43 MB; later runs reuse them.
# KVM is not used: on the machines this was written for, /dev/kvm opens but guests die
# on CPU features, while TCG with `-cpu max` works (about 3-5 s to boot and power off).
set -eu

WORK=${WORK:-/tmp/numa-vm}
MEM=${MEM_PER_NODE_MB:-512}
TIMEOUT=${TIMEOUT:-300}
Q=$WORK/root

cannot() { echo "numa-vm: cannot run a guest here: $*" >&2; exit 3; }

# 1. QEMU + firmware + kernel + busybox, unpacked from Debian packages.
prepare() {
  [ "$(uname -m)" = x86_64 ] || cannot "the guest is x86_64 and so must the host be"
  if ! command -v cpio >/dev/null; then
    command -v apt-get >/dev/null || cannot "cpio is missing (and no apt-get to install it)"
    apt-get install -y --no-install-recommends cpio >/dev/null 2>&1 || cannot "cpio is missing and cannot be installed"
  fi
  [ -x "$Q/usr/bin/qemu-system-x86_64" ] && ls "$Q"/boot/vmlinuz-* >/dev/null 2>&1 && return 0
  command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || cannot "no apt-get/dpkg-deb"
  rm -rf "$WORK/debs" "$Q"; mkdir -p "$WORK/debs" "$Q"
  KPKG=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')
  [ -n "$KPKG" ] || cannot "apt knows no linux-image-cloud-amd64 (run apt-get update?)"
  PKGS=$(apt-get install -s --no-install-recommends qemu-system-x86 busybox-static 2>/dev/null | awk '/^Inst/{print $2}')
  [ -n "$PKGS" ] || cannot "apt cannot resolve qemu-system-x86 busybox-static"
  # shellcheck disable=SC2086 # word splitting of the package list is intended
  (cd "$WORK/debs" && apt-get download $PKGS "$KPKG" >/dev/null 2>&1) || cannot "downloading the packages failed"
  for d in "$WORK"/debs/*.deb; do dpkg-deb -x "$d" "$Q"; done
  [ -x "$Q/usr/bin/qemu-system-x86_64" ] || cannot "the packages hold no qemu-system-x86_64"
}

if [ "${1:-}" = --prepare ]; then prepare; exit 0; fi
NODES=${1:?usage: numa-vm.sh NODES CPUS_PER_NODE BINARY...}; CPN=${2:?cpus per node}; shift 2
[ $# -ge 1 ] || { echo "numa-vm: no binary to run" >&2; exit 2; }
prepare
KERNEL=$(ls "$Q"/boot/vmlinuz-* | head -1)
export LD_LIBRARY_PATH="$Q/usr/lib/x86_64-linux-gnu:$Q/lib/x86_64-linux-gnu"

# 2. initramfs: static busybox, the binaries and their shared libraries, and an init
#    that mounts /proc, /sys and /dev, runs the binaries and powers off.
I=$WORK/initrd; rm -rf "$I"; mkdir -p "$I/bin" "$I/proc" "$I/sys" "$I/dev" "$I/tmp" "$I/lib64"
cp "$Q/bin/busybox" "$I/bin/"
RUN=""
for b in "$@"; do
  name=$(basename "$b")
  cp "$b" "$I/bin/"
  RUN="$RUN
/bin/$name ${GUEST_ARGS:-}; echo \"GUEST: exit=\$? $name\""
  for lib in $(ldd "$b" 2>/dev/null | awk '/=> \//{print $3}'); do
    mkdir -p "$I$(dirname "$lib")"; cp -L "$lib" "$I$lib"
  done
done
cp -L /lib64/ld-linux-x86-64.so.2 "$I/lib64/" 2>/dev/null || true
cat > "$I/init" <<EOF
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
echo "GUEST: nodes=\$(ls -d /sys/devices/system/node/node* | wc -l) cpus=\$(nproc) mem=\$(awk '/MemTotal/{print \$2}' /proc/meminfo)kB uptime=\$(cut -d' ' -f1 /proc/uptime)s"
$RUN
echo "GUEST: done uptime=\$(cut -d' ' -f1 /proc/uptime)s"
poweroff -f
EOF
chmod +x "$I/init"
(cd "$I" && find . | cpio -o -H newc 2>/dev/null | gzip -1 > "$WORK/initrd.gz")

# 3. NUMA layout: NODES nodes with CPN vCPUs and MEM MiB each, then MEMORY_ONLY_NODES
#    nodes with MEM MiB and no CPUs.
MEMONLY=${MEMORY_ONLY_NODES:-0}
NUMA=""; c=0; n=0
while [ $n -lt "$NODES" ]; do
  NUMA="$NUMA -object memory-backend-ram,id=m$n,size=${MEM}M -numa node,nodeid=$n,cpus=$c-$((c + CPN - 1)),memdev=m$n"
  c=$((c + CPN)); n=$((n + 1))
done
while [ $n -lt $((NODES + MEMONLY)) ]; do
  NUMA="$NUMA -object memory-backend-ram,id=m$n,size=${MEM}M -numa node,nodeid=$n,memdev=m$n"
  n=$((n + 1))
done
# shellcheck disable=SC2086 # $NUMA is a list of options
exec timeout "$TIMEOUT" "$Q/usr/bin/qemu-system-x86_64" -L "$Q/usr/share/seabios" -L "$Q/usr/share/qemu" \
  -accel tcg,thread=multi -cpu max -smp $((NODES * CPN)) -m $(((NODES + MEMONLY) * MEM))M $NUMA \
  -kernel "$KERNEL" -initrd "$WORK/initrd.gz" -append "console=ttyS0 quiet panic=-1" \
  -nographic -no-reboot -nic none
