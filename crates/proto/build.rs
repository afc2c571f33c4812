//! Compiles `proto/rampart/v1/*.proto` with protox, a pure-Rust protobuf compiler, so that the
//! build needs no system `protoc`.

use prost::Message as _;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = [root.join("rampart/v1/worker.proto")];
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    let fds = protox::compile(&files, [&root])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("rampart_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure().bytes(".rampart.v1").compile_fds(fds)?;
    Ok(())
}
