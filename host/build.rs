//! Generates the KEDA External Scaler server and client from
//! `proto/externalscaler.proto` with a pure-Rust protobuf compiler (protox),
//! so building needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/externalscaler.proto");
    let descriptors = protox::compile(["proto/externalscaler.proto"], ["proto"])?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(descriptors)?;
    Ok(())
}
