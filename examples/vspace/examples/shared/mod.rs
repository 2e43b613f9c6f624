//! What the `follow` demo and the `numa_vm_follow` VM check share.

use ldnr_vspace::{AddressSpace, Prot, PAGE_SIZE};

/// One-page mappings a page apart (so that none merge), alternately read-only and
/// read-write: `mappings` of them from address 0.
pub(crate) fn prefilled(mappings: u64) -> AddressSpace {
    let mut space = AddressSpace::new();
    for i in 0..mappings {
        let prot = if i % 2 == 0 {
            Prot::READ
        } else {
            Prot::READ | Prot::WRITE
        };
        space
            .map(2 * i * PAGE_SIZE, PAGE_SIZE, prot)
            .expect("fresh range");
    }
    space
}
