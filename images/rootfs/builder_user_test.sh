#!/bin/bash
# builder_user_test.sh: builder_user.sh on small fake root tars (no Debian root needed).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tool=$here/builder_user.sh
work=$(mktemp -d "${TEST_TMPDIR:-/tmp}/builder_user_test.XXXXXX")
fail=0
check() { if eval "$2"; then echo "PASS $1"; else echo "FAIL $1"; fail=1; fi; }

# mkroot DIR PASSWD_EXTRA: a tar with ./etc/{passwd,group,shadow,gshadow} (as mmdebstrap writes).
mkroot() {
  mkdir -p "$1/etc"
  printf 'root:x:0:0:root:/root:/bin/bash\n%s' "$2" > "$1/etc/passwd"
  printf 'root:x:0:\n' > "$1/etc/group"
  printf 'root:*:19000:0:99999:7:::\n' > "$1/etc/shadow"
  printf 'root:*::\n' > "$1/etc/gshadow"
  tar -C "$1" -cf "$1.tar" ./etc
}

mkroot "$work/ok" ""
"$tool" "$work/ok.tar" "$work/out" builder 1000 100000 65536
check "exit 0 on a clean root" "[[ \$? == 0 ]]"
check "passwd line appended" "[[ \$(tail -n1 $work/out/passwd) == 'builder:x:1000:1000:kiln build user:/home/builder:/usr/sbin/nologin' ]]"
check "root kept" "grep -qx 'root:x:0:0:root:/root:/bin/bash' $work/out/passwd"
check "group line" "[[ \$(tail -n1 $work/out/group) == 'builder:x:1000:' ]]"
check "shadow locked" "[[ \$(tail -n1 $work/out/shadow) == 'builder:!::0:99999:7:::' ]]"
check "subuid" "[[ \$(cat $work/out/subuid) == 'builder:100000:65536' ]]"
check "subgid" "[[ \$(cat $work/out/subgid) == 'builder:100000:65536' ]]"

mkroot "$work/taken" "someone:x:1000:1000::/home/someone:/bin/sh
"
"$tool" "$work/taken.tar" "$work/out2" builder 1000 100000 65536 2> "$work/err2"
check "uid 1000 taken -> exit 1" "[[ \$? == 1 ]]"
check "uid 1000 taken -> says so" "grep -q 'already exists' $work/err2"

"$tool" "$work/ok.tar" "$work/out3" builder 1000 500 65536 2> "$work/err3"
check "sub range containing the uid -> exit 1" "[[ \$? == 1 ]] && grep -q 'contains the user' $work/err3"

mkdir -p "$work/empty/x" && tar -C "$work/empty" -cf "$work/empty.tar" ./x
"$tool" "$work/empty.tar" "$work/out4" builder 1000 100000 65536 2> "$work/err4"
check "no /etc/passwd -> exit 1" "[[ \$? == 1 ]] && grep -q 'has no ./etc/passwd' $work/err4"

"$tool" "$work/ok.tar" "$work/out5" 'Bad;name' 1000 100000 65536 2>/dev/null
check "bad name -> exit 1" "[[ \$? == 1 ]]"
rm -rf "$work"
exit $fail
