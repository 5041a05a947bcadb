#![allow(dead_code)] // each user takes what it needs

//! The checked-in fuzz seeds (fuzz/seeds/TARGET/, regression inputs among them) and a
//! deterministic mutator, so that `cargo test` on stable runs every fuzz body over its corpus.

use std::path::Path;

/// Every seed of `target`, in file-name order.
pub fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.expect("seed entry").path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).expect("seed readable"))
        })
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no seeds for {target}");
    v
}

/// xorshift64: deterministic, so a failure here reproduces.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// Flips bits, overwrites or inserts a byte, or cuts the tail.
    pub fn mutate(&mut self, input: &[u8]) -> Vec<u8> {
        let mut v = input.to_vec();
        for _ in 0..1 + self.below(4) {
            if v.is_empty() {
                v.push(self.next() as u8);
                continue;
            }
            match self.below(4) {
                0 => {
                    let i = self.below(v.len());
                    v[i] ^= 1 << self.below(8);
                }
                1 => {
                    let i = self.below(v.len());
                    v[i] = self.next() as u8;
                }
                2 => {
                    let i = self.below(v.len() + 1);
                    v.insert(i, self.next() as u8);
                }
                _ => v.truncate(self.below(v.len() + 1)),
            }
        }
        v
    }
}

/// Runs `body` on every seed of `target` and on `mutations` mutants of each.
pub fn run_corpus(target: &str, body: fn(&[u8]), seed: u64, mutations: usize) {
    let mut rng = Rng(seed);
    for (name, input) in seeds(target) {
        let r = std::panic::catch_unwind(|| body(&input));
        assert!(r.is_ok(), "{target}: seed {name} broke a promise");
        for _ in 0..mutations {
            body(&rng.mutate(&input));
        }
    }
}
