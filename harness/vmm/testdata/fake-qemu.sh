#!/bin/sh
# fake-qemu.sh: stands in for qemu-system-x86_64 in qemu_vm_test (no VM is started).
# --version: prints a QEMU-like version line. Otherwise finds `-serial file:PATH` and
# `-append CMDLINE`, writes a serial log to PATH, and then behaves as the cmdline says:
#   fake.mode=poweroff  prints init's end marker and exits 0 (a guest that powers off)
#   fake.mode=hang      prints `ready` and sleeps (a hung guest; in the background too, to
#                       check that the whole process group is killed)
#   fake.mode=crash     exits 1 without an end marker
if [ "$1" = "--version" ]; then
  echo "QEMU emulator version 9.9.9 (fake)"
  exit 0
fi
serial=""
cmdline=""
while [ $# -gt 0 ]; do
  case "$1" in
    -serial) serial=${2#file:}; shift ;;
    -append) cmdline=$2; shift ;;
  esac
  shift
done
[ -n "$serial" ] || { echo "fake-qemu: no -serial file:" >&2; exit 2; }
echo "Linux version 6.1.0-fake (fake)" > "$serial"
echo "Command line: $cmdline" >> "$serial"
case "$cmdline" in
  *fake.mode=poweroff*)
    echo "KILN-INIT: ready uptime_ms=1" >> "$serial"
    echo "KILN-INIT: exit status=0 uptime_ms=2" >> "$serial"
    exit 0 ;;
  *fake.mode=hang*)
    echo "KILN-INIT: ready uptime_ms=1" >> "$serial"
    sleep 300 &
    echo $! > "$(dirname "$serial")/grandchild.pid"
    trap '' TERM
    wait
    exit 0 ;;
  *)
    echo "fake-qemu: crashing" >&2
    exit 1 ;;
esac
