//! The fuzz targets of `fuzz/` without libFuzzer (CI builds no sanitizer toolchain): every seed of
//! `fuzz/corpus/<target>/` (and any crash reproducer saved there as `seed-regress-*`) plus
//! deterministic mutations of them run through the same entry points (this crate's, and the
//! provider payload harness [`secretsync_fuzz_entry::payload`]). No panic is the assertion; each
//! entry point also checks that errors do not quote input values and outputs stay bounded.
//! `payload_azure` is one of [`secretsync_fuzz_entry::TARGETS`]: the Azure provider on an in-memory
//! transport, so it replays with the pure targets (full mutation count) rather than with the
//! socket-based payload harness.
//!
//! Knobs: `FUZZ_MUTATIONS` (per target, default 3000; payload targets a tenth), `FUZZ_SECS` (time cap
//! per target, default 6). `make test` runs it (`cargo test --workspace`); `make soak` with many
//! more mutations (`cargo test -p secretsync-fuzz-entry --test fuzz_corpus`).

use std::path::Path;
use std::time::{Duration, Instant};

use secretsync_fuzz_entry::{TARGETS, file_store_seed, payload};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const DICT: &[&[u8]] = &[
    b"FUZZSECRET",
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b"\\",
    b".",
    b"..",
    b"\0",
    b"{{",
    b"}}",
    b"{%",
    b"%}",
    b"|",
    b"\n- ",
    b": ",
    b"&a",
    b"*a",
    b"null",
    b"1e999",
    b"\xff",
    b"\xc3",
    b"%2e",
];

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut d = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 if !d.is_empty() => {
                let i = rng.below(d.len());
                d[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(d.len() + 1);
                let w = DICT[rng.below(DICT.len())];
                d.splice(i..i, w.iter().copied());
            }
            2 if !d.is_empty() => {
                let i = rng.below(d.len());
                d.truncate(i);
            }
            3 if !d.is_empty() => {
                let i = rng.below(d.len());
                let j = (i + rng.below(16)).min(d.len());
                d.drain(i..j);
            }
            4 if !d.is_empty() && d.len() < 100_000 => {
                let i = rng.below(d.len());
                let j = (i + rng.below(64)).min(d.len());
                let part: Vec<u8> = d[i..j].to_vec();
                for _ in 0..rng.below(8) {
                    d.splice(i..i, part.iter().copied());
                }
            }
            _ => {
                let other = &seeds[rng.below(seeds.len())];
                let cut = rng.below(other.len() + 1);
                d.extend_from_slice(&other[..cut]);
            }
        }
    }
    d
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    // fuzz/entry → fuzz/corpus/<target>
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../corpus")
        .join(target);
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("seed-"))
        .map(|e| std::fs::read(e.path()).unwrap())
        .collect();
    assert!(!out.is_empty(), "no seeds for {target}");
    if target == "file_store" {
        out.push(file_store_seed());
    }
    out
}

fn run(target: &str, f: fn(&[u8]), mutations: u64) -> (usize, u64) {
    let seeds = seeds(target);
    for s in &seeds {
        f(s);
    }
    let cap = Duration::from_secs(env_num("FUZZ_SECS", 6));
    let start = Instant::now();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ target.len() as u64);
    let mut n = 0;
    while n < mutations && start.elapsed() < cap {
        let input = mutate(&mut rng, &seeds);
        f(&input);
        n += 1;
    }
    eprintln!("{target}: {} seeds + {n} mutations", seeds.len());
    (seeds.len(), n)
}

#[test]
fn pure_targets_survive_their_corpus() {
    let m = env_num("FUZZ_MUTATIONS", 3000);
    let mut total = 0;
    for (name, f) in TARGETS {
        let (s, n) = run(name, *f, m);
        total += s as u64 + n;
    }
    eprintln!("fuzz corpus: {total} inputs over {} targets", TARGETS.len());
}

#[test]
fn provider_payload_targets_survive_their_corpus() {
    let m = env_num("FUZZ_MUTATIONS", 3000) / 10;
    run("payload_vault", payload::vault_kv, m);
    run("payload_aws", payload::aws_get, m);
}
