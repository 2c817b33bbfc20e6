//! Generates the prost messages and tonic services from `protos/`. protoc comes from the
//! `protoc-bin-vendored` crate unless `$PROTOC` names another one, so a fresh machine needs no
//! system protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = match std::env::var_os("PROTOC") {
        Some(path) => std::path::PathBuf::from(path),
        None => protoc_bin_vendored::protoc_bin_path()?,
    };
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let files = [
        "protos/diego/models.proto",
        "protos/diego/bbs.proto",
        "protos/diego/locket.proto",
        "protos/diego/auctioneer.proto",
        "protos/diego/rep.proto",
    ];
    tonic_prost_build::configure().file_descriptor_set_path(out.join("diego_descriptor.bin")).compile_with_config(
        config,
        &files.map(std::path::PathBuf::from),
        &[std::path::PathBuf::from("protos"), protoc_bin_vendored::include_path()?],
    )?;
    println!("cargo:rerun-if-changed=protos");
    println!("cargo:rerun-if-env-changed=PROTOC");
    Ok(())
}
