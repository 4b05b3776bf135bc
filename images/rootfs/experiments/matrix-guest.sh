#!/bin/sh
# Rootless/rootful BuildKit matrix experiment, run by kiln init as kiln.exec (root).
# cmdline keys (ignored by init): exp.mode=rootless|rootful exp.deleg=none|leaf|parent
up() { cut -d' ' -f1 /proc/uptime; }
say() { echo "EXP $(up) $*"; }
arg() { tr ' ' '\n' < /proc/cmdline | sed -n "s/^exp\.$1=//p"; }
mode=$(arg mode); deleg=$(arg deleg)
say start mode=$mode deleg=$deleg cgroup="$(grep ' /sys/fs/cgroup ' /proc/self/mountinfo | cut -d' ' -f5,6,9)"
mountpoint -q /exp || say exp-not-mounted
for d in /var/lib/docker /etc/docker /var/lib/containerd /run/containerd /home/builder /tmp; do mkdir -p $d; mount -t tmpfs tmpfs $d || say mount-failed $d; done
cp /exp/secret /run/secret && chmod 0400 /run/secret
if [ "$mode" = rootful ]; then
  SOCK=/run/docker.sock
  containerd >/run/containerd.log 2>&1 &
  dockerd --iptables=false --ip-forward=false --ip-masq=false --bridge=none --containerd=/run/containerd/containerd.sock --host unix://$SOCK >/run/dockerd.log 2>&1 &
else
  chown 1000:1000 /home/builder; mkdir -p -m 0700 /run/user/1000; chown 1000:1000 /run/user/1000
  SOCK=/run/user/1000/docker.sock
  extra=""
  if [ "$(arg net)" != host ]; then
    LD_LIBRARY_PATH=/exp/slirp/lib /exp/slirp/bin/insmod /exp/slirp/tun.ko || say insmod-tun-failed
    mkdir -p /dev/net; [ -e /dev/net/tun ] || mknod -m 0666 /dev/net/tun c 10 200; chmod 0666 /dev/net/tun
  fi
  if [ "$deleg" != none ]; then
    C=/sys/fs/cgroup
    say root-controllers "$(cat $C/cgroup.controllers)"
    echo "+cpu +cpuset +io +memory +pids" > $C/cgroup.subtree_control || say enable-root-failed
    mkdir $C/kiln-builder $C/kiln-builder/daemon
    for d in $C/kiln-builder $C/kiln-builder/daemon; do
      chown 1000:1000 $d $d/cgroup.procs $d/cgroup.subtree_control $d/cgroup.threads
    done
    echo $$ > $C/kiln-builder/daemon/cgroup.procs || say move-failed
    echo "+cpu +cpuset +io +memory +pids" > $C/kiln-builder/cgroup.subtree_control || say enable-deleg-failed
    say delegated "$(cat /proc/self/cgroup)" subtree="$(cat $C/kiln-builder/cgroup.subtree_control)"
    [ "$deleg" = parent ] && extra="--cgroup-parent=/kiln-builder/buildkit"
  fi
  setpriv --reuid=1000 --regid=1000 --clear-groups env -i HOME=/home/builder XDG_RUNTIME_DIR=/run/user/1000 \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    $(if [ "$(arg net)" = slirp ]; then echo PATH=/exp/slirp/bin:/usr/sbin:/usr/bin:/sbin:/bin LD_LIBRARY_PATH=/exp/slirp/lib; elif [ "$(arg net)" = host ]; then echo DOCKERD_ROOTLESS_ROOTLESSKIT_NET=host DOCKERD_ROOTLESS_ROOTLESSKIT_PORT_DRIVER=$(arg port) DOCKERD_ROOTLESS_ROOTLESSKIT_DISABLE_HOST_LOOPBACK=false; fi) \
    sh /usr/share/docker.io/contrib/dockerd-rootless.sh --iptables=false --ip-forward=false --ip-masq=false --bridge=none $extra >/run/dockerd.log 2>&1 &
fi
DPID=$!
i=0; while [ ! -S $SOCK ] && [ $i -lt 600 ] && kill -0 $DPID 2>/dev/null; do sleep 0.1; i=$((i+1)); done
export DOCKER_HOST=unix://$SOCK; D=/usr/bin/docker
$D version --format '{{.Server.Version}}' >/dev/null 2>&1 || sleep 2
say dockerd-ready sock=$([ -S $SOCK ] && echo yes || echo no)
[ -S $SOCK ] || { sed 's/^/EXP-LOG dockerd: /' /run/dockerd.log | tail -40; exit 1; }
$D info 2>&1 | grep -E "Cgroup|rootless|Storage Driver|Server Version|Security" | sed 's/^/EXP-INFO /'
$D load -i /exp/bb.tar 2>&1 | sed 's/^/EXP-LOAD /'
say loaded
[ "$(arg diag)" = 1 ] && { $D version 2>&1 | tail -8 | sed 's/^/EXP-DIAG version /'; $D buildx ls 2>&1 | sed 's/^/EXP-DIAG ls /'; $D buildx inspect 2>&1 | tail -5 | sed 's/^/EXP-DIAG inspect /'; env | grep -i -E "proxy|docker" | sed 's/^/EXP-DIAG env /'; ls -la /run/user/1000/ | sed 's/^/EXP-DIAG run /'; }
# who runs the RUN step: watch for the step's "sleep 3"
( j=0; while [ $j -lt 400 ]; do for p in /proc/[0-9]*; do
    case "$(tr '\0' ' ' < $p/cmdline 2>/dev/null)" in *"-c sleep 3;"*|*"-c sh -c"*"sleep 3;"*)
      echo "EXP $(up) RUN-proc pid=${p#/proc/} $(grep -E '^(Uid|Gid):' $p/status | tr '\t\n' '  ') cgroup=$(cat $p/cgroup)"; exit 0;; esac; done; sleep 0.1; j=$((j+1)); done ) &
W=$!
for c in plain secret env; do
  say build-$c-start
  DOCKER_BUILDKIT=1 timeout 90 $D build --network=none --secret id=s,src=/run/secret --progress=plain -t exp-$c /exp/ctx-$c > /run/build-$c.log 2>&1
  rc=$?
  say build-$c-done rc=$rc
  if [ "$mode" = rootless ] && grep -q "driver not connecting" /run/build-$c.log; then
    sed 's/^/EXP-B-$c-asroot /' /run/build-$c.log | tail -3
    cp /run/secret /run/user/1000/secret; chown 1000:1000 /run/user/1000/secret
    setpriv --reuid=1000 --regid=1000 --clear-groups env HOME=/home/builder DOCKER_BUILDKIT=1 timeout 90 $D build --network=none --secret id=s,src=/run/user/1000/secret --progress=plain -t exp-$c /exp/ctx-$c > /run/build-$c.log 2>&1
    say build-$c-done-as-1000 rc=$?
  fi
  grep -vE '^#[0-9]+ (sha256|DONE|CACHED|\[internal\]|transferring|load)' /run/build-$c.log | tail -25 | sed "s/^/EXP-B-$c /"
done
kill $W 2>/dev/null
grep -iE "level=(error|fatal)|panic|goroutine" /run/dockerd.log | tail -8 | sed 's/^/EXP-LOG dockerd: /'
tail -4 /run/dockerd.log | cut -c1-300 | sed "s/^/EXP-LOGTAIL /"
say end
