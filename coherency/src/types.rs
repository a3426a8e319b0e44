//! Identifiers and small value types shared by the engine, the model and the simulator.

use std::fmt;

/// Index of a kernel (an island). At most [`MAX_KERNELS`] kernels take part in the protocol.
pub type KernelId = u8;

/// Index of a page in the program's address space (in the VMM: guest address >> 12).
pub type PageId = u64;

/// The largest number of kernels: a [`KernelSet`] is one 64-bit word.
pub const MAX_KERNELS: usize = 64;

/// A set of kernels, as a bitmap (the paper's "users" bitmap, §5.2).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KernelSet(pub u64);

impl KernelSet {
    /// The empty set.
    pub const EMPTY: KernelSet = KernelSet(0);

    /// The set `{0, 1, ..., n - 1}`.
    pub fn first(n: usize) -> KernelSet {
        if n >= 64 {
            KernelSet(u64::MAX)
        } else {
            KernelSet((1u64 << n) - 1)
        }
    }

    /// The set holding only `k`.
    pub fn only(k: KernelId) -> KernelSet {
        KernelSet(1u64 << k)
    }

    pub fn contains(self, k: KernelId) -> bool {
        self.0 & (1u64 << k) != 0
    }

    pub fn insert(&mut self, k: KernelId) {
        self.0 |= 1u64 << k;
    }

    pub fn remove(&mut self, k: KernelId) {
        self.0 &= !(1u64 << k);
    }

    pub fn with(self, k: KernelId) -> KernelSet {
        KernelSet(self.0 | (1u64 << k))
    }

    pub fn without(self, k: KernelId) -> KernelSet {
        KernelSet(self.0 & !(1u64 << k))
    }

    pub fn union(self, other: KernelSet) -> KernelSet {
        KernelSet(self.0 | other.0)
    }

    pub fn minus(self, other: KernelSet) -> KernelSet {
        KernelSet(self.0 & !other.0)
    }

    pub fn is_subset(self, other: KernelSet) -> bool {
        self.0 & !other.0 == 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// Members in increasing order.
    pub fn iter(self) -> impl Iterator<Item = KernelId> {
        let mut bits = self.0;
        std::iter::from_fn(move || {
            if bits == 0 {
                None
            } else {
                let k = bits.trailing_zeros() as KernelId;
                bits &= bits - 1;
                Some(k)
            }
        })
    }
}

impl fmt::Debug for KernelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl fmt::Display for KernelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{")?;
        for (i, k) in self.iter().enumerate() {
            if i > 0 {
                write!(f, ",")?;
            }
            write!(f, "{k}")?;
        }
        write!(f, "}}")
    }
}

/// What a thread does to a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Access {
    Read,
    Write,
}

/// The host's name for one waiting access (in the VMM: the faulting thread). The engine hands it
/// back in [`crate::Host::complete`].
pub type AccessToken = u64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_set_operations() {
        let mut s = KernelSet::EMPTY;
        s.insert(3);
        s.insert(63);
        s.insert(0);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0, 3, 63]);
        assert_eq!(s.len(), 3);
        assert!(s.contains(63) && !s.contains(1));
        s.remove(3);
        assert_eq!(s.to_string(), "{0,63}");
        assert_eq!(KernelSet::first(3), KernelSet(0b111));
        assert_eq!(KernelSet::first(64), KernelSet(u64::MAX));
        assert!(KernelSet::only(2).is_subset(KernelSet::first(3)));
        assert!(!KernelSet::only(3).is_subset(KernelSet::first(3)));
    }
}
