//! `docs/limits.md` is the limits table as it is in the code.

#[test]
fn docs_limits_md_matches_the_table() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/limits.md");
    let want = proto::limits::markdown();
    if std::env::var_os("DIEGO_BLESS").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(have == want, "docs/limits.md is stale: rerun with DIEGO_BLESS=1 to rewrite it");
}
