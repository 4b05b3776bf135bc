// bare_init: the smallest possible PID 1, the baseline of boot_benchmark. It prints one line
// on the console and powers the VM off at once: no mounts, no modules, no root switch.
#include <stdio.h>
#include <sys/reboot.h>
#include <unistd.h>

int main(void) {
  fputs("KILN-BARE: up\n", stdout);
  fflush(stdout);
  reboot(RB_POWER_OFF);
  for (;;) pause();
}
