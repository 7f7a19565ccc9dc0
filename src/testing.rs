//! Helpers shared by the unit tests.

/// xorshift64: a small deterministic random source for the fuzz tests.
pub fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}

/// Damages `input` with `edits` random edits: a byte removed, the input cut short, or a byte
/// from `alphabet` inserted.
pub fn damage(input: &mut Vec<u8>, edits: u64, alphabet: &[u8], rng: &mut impl FnMut() -> u64) {
    for _ in 0..edits {
        let at = (rng() % (input.len() as u64 + 1)) as usize;
        match rng() % 3 {
            0 if at < input.len() => {
                input.remove(at);
            }
            1 => input.truncate(at),
            _ => input.insert(at, alphabet[(rng() % alphabet.len() as u64) as usize]),
        }
    }
}
