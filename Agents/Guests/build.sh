#!/usr/bin/env bash
# Builds the guest images (freestanding C and assembly) into flat binaries with gcc, ld and
# objcopy. The built images are committed (Agents/Guests/images), so a machine without this
# toolchain needs nothing; deploy/test.sh rebuilds them where it exists, compares them
# with the committed ones and boots them when they differ.
#   Agents/Guests/build.sh [OUTPUT-DIR]     (default: Agents/Guests/images)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/images}"
mkdir -p "$out"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cflags=(-O2 -ffreestanding -fno-pic -fno-pie -fno-stack-protector -fno-asynchronous-unwind-tables
        -mno-red-zone -mgeneral-regs-only -mcmodel=small -nostdlib -nostdinc -isystem "$(gcc -print-file-name=include)"
        -I "$here/abi/include" -Wall -Wextra -Werror -std=c11)
gcc "${cflags[@]}" -c "$here/common/workloads.c" -o "$work/workloads.o"
gcc "${cflags[@]}" -c "$here/lpar-os/entry.S" -o "$work/entry.o"
gcc "${cflags[@]}" -c "$here/lpar-os/main.c" -o "$work/main.o"
ld -nostdlib -static -no-pie --build-id=none --no-warn-rwx-segments -T "$here/lpar-os/link.ld" -o "$work/lpar-os.elf" "$work/entry.o" "$work/main.o" "$work/workloads.o"
objcopy -O binary "$work/lpar-os.elf" "$out/lpar-os.bin"
echo "built $out/lpar-os.bin ($(stat -c %s "$out/lpar-os.bin") bytes)"

# The VMX microcode page L0 maps into LPARs created with vmm (at most 4 KiB, at 0x70000).
gcc "${cflags[@]}" -c "$here/vmx-microcode/microcode.S" -o "$work/microcode.o"
ld -nostdlib -static -no-pie --build-id=none -Ttext=0x70000 -e _start -o "$work/microcode.elf" "$work/microcode.o"
objcopy -O binary "$work/microcode.elf" "$out/vmx-microcode.bin"
test "$(stat -c %s "$out/vmx-microcode.bin")" -le 4096
echo "built $out/vmx-microcode.bin ($(stat -c %s "$out/vmx-microcode.bin") bytes)"

# The guest of L2 VMs (embedded in the guest hypervisor's image, not an image of its own).
gcc "${cflags[@]}" -c "$here/l2-os/entry.S" -o "$work/l2-entry.o"
gcc "${cflags[@]}" -c "$here/l2-os/main.c" -o "$work/l2-main.o"
ld -nostdlib -static -no-pie --build-id=none --no-warn-rwx-segments -T "$here/l2-os/link.ld" -o "$work/l2-os.elf" "$work/l2-entry.o" "$work/l2-main.o" "$work/workloads.o"
objcopy -O binary "$work/l2-os.elf" "$work/l2-os.bin"

# The guest hypervisor (L1).
gcc "${cflags[@]}" -c "$here/lpar-os/entry.S" -o "$work/l1-entry.o"
gcc "${cflags[@]}" -c "$here/l1-vmm/main.c" -o "$work/l1-main.o"
gcc "${cflags[@]}" -c "$here/l1-vmm/vmx-entry.S" -o "$work/l1-vmx-entry.o"
gcc "${cflags[@]}" -DL2_OS_IMAGE="\"$work/l2-os.bin\"" -c "$here/l1-vmm/l2-image.S" -o "$work/l1-l2-image.o"
ld -nostdlib -static -no-pie --build-id=none --no-warn-rwx-segments -T "$here/lpar-os/link.ld" -o "$work/l1-vmm.elf" "$work/l1-entry.o" "$work/l1-main.o" "$work/l1-vmx-entry.o" "$work/l1-l2-image.o"
objcopy -O binary "$work/l1-vmm.elf" "$out/l1-vmm.bin"
echo "built $out/l1-vmm.bin ($(stat -c %s "$out/l1-vmm.bin") bytes)"
