/* The guest ABI as a C target of the Swift package: Swift (KVMBackend's GuestABI) reads the
 * addresses, ports and structure layouts from these headers, the guest images are built from
 * the same headers (Agents/Guests/build.sh), so the two sides cannot drift. The assertions
 * pin the layouts the images were built with. */
#include <stddef.h>
#include "abi.h"
#include "l2-abi.h"
#include "vmx-abi.h"

_Static_assert(sizeof(struct block_request) == 32, "struct block_request");
_Static_assert(offsetof(struct mailbox, cpu_operations) == 120, "struct mailbox");
_Static_assert(sizeof(struct mailbox) == 120 + 8 * ABI_MAX_VCPUS, "struct mailbox");
_Static_assert(sizeof(struct vm_report) == 80, "struct vm_report");
_Static_assert(VM_TABLE + VM_SLOTS * sizeof(struct vm_report) <= ABI_MAILBOX + 0x1000, "the VM table stays in the mailbox page");
