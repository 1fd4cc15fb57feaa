//! Generates the gRPC code from `proto/echo.proto` with `protoc` (Debian's `protobuf-compiler`,
//! installed by `.ci/run`; or set `PROTOC`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/echo.proto");
    tonic_prost_build::compile_protos("proto/echo.proto")?;
    Ok(())
}
