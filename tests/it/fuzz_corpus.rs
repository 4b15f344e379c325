//! The fuzz targets' corpora, replayed on a stable toolchain: every file under
//! `fuzz/corpus/<target>/` (the seeds, and each input that once crashed a target) goes
//! through the same check the fuzz target runs (`fuzz/src/lib.rs`, compiled in here).
//! The fuzzing itself needs cargo-fuzz and a nightly-capable compiler: `scripts/fuzz.sh`.

#[path = "../../fuzz/src/lib.rs"]
mod checks;

use std::path::Path;

#[test]
fn every_corpus_file_passes_its_targets_check() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (target, check) in checks::TARGETS {
        let dir = root.join(target);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{}: no seeds", dir.display());
        for f in files {
            let data = std::fs::read(&f).unwrap();
            // A panic names the file that caused it.
            eprintln!("replaying {}", f.display());
            check(&data);
        }
    }
}
