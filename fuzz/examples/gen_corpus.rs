//! Writes the seed corpora: `corpus/<target>/seed-*` for every fuzz target. Run from `fuzz/`:
//! `cargo run --example gen_corpus`. Existing seeds are overwritten; other corpus files (what
//! libFuzzer found) are left alone.

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for target in diego_fuzz::seeds::TARGETS {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).expect("create the corpus directory");
        let seeds = diego_fuzz::seeds::corpus(target);
        let mut bytes = 0;
        for (name, input) in &seeds {
            std::fs::write(dir.join(name), input).expect("write a seed");
            bytes += input.len();
        }
        println!("{target}: {} seeds, {bytes} bytes in {}", seeds.len(), dir.display());
    }
}
