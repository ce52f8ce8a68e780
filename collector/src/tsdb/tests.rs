//! Engine-level tests: durability, recovery, cuts, retention, bounds, and a randomized
//! differential test against `MemStorage`.

/// A small deterministic PRNG (xorshift64*) so tests need no extra dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}
