"""The files every builder VM boots with, and the flags that pass them ($(rootpath ...)).

For the VM tests of //harness/builder and //harness (build_vm_test): the kernel and initrd
(//harness/vmm), the Debian 13 builder disk, the kiln-busybox:1 image every example build
preloads, and the example contexts.
"""

BUILDER_VM_DATA = [
    "//agent/runner:examples",
    "//agent/runner:examples/README.md",
    "//harness/builder:busybox_image",
    "//harness/builder:vm_builder_disk",
    "//harness/vmm:vm_initrd",
    "//harness/vmm:vm_kernel",
]

BUILDER_VM_ARGS = [
    "--kernel=$(rootpath //harness/vmm:vm_kernel)",
    "--initrd=$(rootpath //harness/vmm:vm_initrd)",
    "--builder_disk=$(rootpath //harness/builder:vm_builder_disk)",
    "--busybox_image=$(rootpath //harness/builder:busybox_image)",
    "--examples_readme=$(rootpath //agent/runner:examples/README.md)",
]
