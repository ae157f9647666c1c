//! Builds the bitnet.cpp reference and the `bnref` shim into a static library.

mod bindings;
mod compile;
mod object_cache;
mod sources;
mod tl2;

use std::env;
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: cannot build the bitnet.cpp reference: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env_var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(env_var("OUT_DIR")?);
    let shim_dir = manifest_dir.join("shim");
    println!("cargo:rerun-if-changed=shim");
    println!("cargo:rerun-if-env-changed={}", sources::CHECKOUT_ENV);

    bindings::regenerate(&manifest_dir)?;

    let reference = sources::locate(&out_dir)?;
    let inputs = reference.inputs()?;
    if reference.watch {
        for input in &inputs {
            println!("cargo:rerun-if-changed={}", input.display());
        }
    }
    let fingerprint = sources::fingerprint(&inputs)?;
    let architectures = reference.architectures()?.join(",");
    let bitnet_root = reference.bitnet_root.display().to_string();
    let record = compile::build_library(&reference, &fingerprint, &shim_dir, &out_dir)?;

    let info = [
        ("BNREF_SOURCE", reference.description.as_str()),
        ("BNREF_VERSION", reference.version.as_str()),
        ("BNREF_FINGERPRINT", fingerprint.as_str()),
        ("BNREF_COMPILER", record.compiler.as_str()),
        ("BNREF_C_FLAGS", record.c_flags.as_str()),
        ("BNREF_CPP_FLAGS", record.cpp_flags.as_str()),
        ("BNREF_ISA", record.isa.as_str()),
        ("BNREF_ARCHITECTURES", architectures.as_str()),
        ("BNREF_TL2", record.tl2.as_str()),
        // The TL2 packer runs the reference's converter from this tree at run time.
        ("BNREF_BITNET_ROOT", bitnet_root.as_str()),
    ];
    for (name, value) in info {
        println!("cargo:rustc-env={name}={}", value.replace('\n', " "));
    }
    Ok(())
}

fn env_var(name: &str) -> Result<String, String> {
    env::var(name).map_err(|_| format!("cargo did not set {name}"))
}
