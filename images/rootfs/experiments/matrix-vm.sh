#!/bin/bash
# matrix-vm.sh NAME DISK CGROUP MODE DELEG [TIMEOUT]: boot one builder VM (QEMU TCG) that runs
# matrix-guest.sh (see ../ROOTLESS.md). Inputs, by hand: /tmp/rootless-exp/art/{vmlinux,
# initrd.cpio.gz,DISK} (copies of //images:vmlinux, //images:initrd, a builder disk) and
# /tmp/rootless-exp/exp.ext4 = `mkfs.ext4 -d DIR` of a DIR holding run.sh (matrix-guest.sh),
# bb.tar (//harness/builder:busybox_image), secret, ctx-{plain,secret,env}/Dockerfile (Dockerfile.*
# here) and, for NET=slirp only, slirp/{bin,lib,tun.ko}. CGROUP rw|ro|off, MODE rootless|rootful,
# DELEG none|parent; env NET=auto|slirp|host, PORT (rootlesskit port driver with NET=host).
# Output: /tmp/rootless-exp/logs/NAME.log (serial), a line in logs/summary.txt.
name=$1 disk=$2 cg=$3 mode=$4 deleg=$5 to=${6:-300}
A=/tmp/rootless-exp/art; L=/tmp/rootless-exp/logs; mkdir -p $L
t0=$(date +%s.%N)
timeout $to qemu-system-x86_64 -M q35 -accel tcg -m 1024 -smp 2 -nodefaults -no-user-config -no-reboot -display none \
  -serial file:$L/$name.log -kernel $A/vmlinux -initrd $A/initrd.cpio.gz \
  -append "console=ttyS0 panic=-1 softlockup_panic=1 reboot=t kiln.root=/dev/vda kiln.cgroup=$cg kiln.exec=\"/bin/sh -c 'mkdir -p /exp; mount -o ro /dev/vdb /exp; exec /bin/sh /exp/run.sh'\" exp.mode=$mode exp.deleg=$deleg exp.diag=0 exp.port=${PORT:-builtin} exp.net=${NET:-host}" \
  -drive file=$A/$disk,if=none,id=d0,format=raw,readonly=on -device virtio-blk-pci,drive=d0 \
  -drive file=/tmp/rootless-exp/exp.ext4,if=none,id=d1,format=raw,readonly=on -device virtio-blk-pci,drive=d1
rc=$?
echo "$name qemu rc=$rc wall=$(echo "$(date +%s.%N) - $t0" | bc)s" | tee -a $L/summary.txt
